"""errands.contrib.sqlalchemy: jobs added in a SQLAlchemy 2 Session's or Connection's
transaction (sync and async, psycopg driver) commit and roll back with it."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

pytest.importorskip("sqlalchemy", reason="SQLAlchemy is not installed (errands[sqlalchemy])")

from sqlalchemy import String, create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from errands import JobSpec
from errands.contrib.sqlalchemy import (
    add_job,
    add_job_async,
    add_jobs,
    add_jobs_async,
)


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(100))


def sqlalchemy_url(dsn: str) -> str:
    """The test's libpq URI with the psycopg driver: postgresql+psycopg://..."""
    assert dsn.startswith("postgresql://"), dsn
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def engine(db: str) -> Any:
    eng = create_engine(sqlalchemy_url(db))
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


def state(dsn: str) -> tuple[list[str], list[tuple[str, Any]]]:
    """The notes' bodies and the jobs' (task, payload)."""
    with psycopg.connect(dsn) as conn:
        notes = [r[0] for r in conn.execute("SELECT body FROM notes ORDER BY id")]
        jobs = conn.execute(
            "SELECT task_identifier, payload FROM errands.jobs ORDER BY id"
        ).fetchall()
    return notes, jobs


def test_session_commit_keeps_the_job_and_rollback_drops_it(engine: Engine, db: str) -> None:
    with Session(engine) as session:
        session.add(Note(body="kept"))
        job = add_job(session, "notify", {"note": "kept"}, priority=3)
        assert job.priority == 3 and job.payload == {"note": "kept"}
        session.commit()
    with Session(engine) as session:
        session.add(Note(body="dropped"))
        add_job(session, "notify", {"note": "dropped"})
        session.rollback()
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        session.add(Note(body="raised"))
        add_job(session, "notify", {"note": "raised"})
        raise RuntimeError("inside session.begin()")
    assert state(db) == (["kept"], [("notify", {"note": "kept"})])


def test_session_begin_block_and_add_jobs(engine: Engine, db: str) -> None:
    with Session(engine) as session, session.begin():
        add_jobs(session, [JobSpec("a", {"n": 1}), JobSpec("b", {"n": 2})])
        session.add(Note(body="with two jobs"))
    assert state(db) == (["with two jobs"], [("a", {"n": 1}), ("b", {"n": 2})])


def test_connection_commit_and_rollback(engine: Engine, db: str) -> None:
    with engine.connect() as conn:
        # Nothing executed yet: add_job begins the transaction, so commit() commits it.
        add_job(conn, "first")
        conn.commit()
        add_job(conn, "rolled_back")
        conn.rollback()
        add_job(conn, "closed_without_commit")
    with engine.begin() as conn:
        add_job(conn, "in_begin_block")
    assert state(db) == ([], [("first", {}), ("in_begin_block", {})])


def test_a_non_sqlalchemy_argument_is_refused(db: str) -> None:
    with psycopg.connect(db) as conn, pytest.raises(TypeError, match="Session or Connection"):
        add_job(conn, "x")  # type: ignore[arg-type]


def test_an_engine_with_another_driver_is_refused() -> None:
    sqlite = create_engine("sqlite://")
    with Session(sqlite) as session, pytest.raises(TypeError, match=r"not sqlite\+pysqlite"):
        add_job(session, "x")
    sqlite.dispose()


def test_async_session_and_connection(db: str) -> None:
    async def main() -> None:
        engine = create_async_engine(sqlalchemy_url(db))
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            async with AsyncSession(engine) as session:
                session.add(Note(body="async kept"))
                job = await add_job_async(session, "notify", {"note": "async kept"})
                assert job.task_identifier == "notify"
                await session.commit()
            async with AsyncSession(engine) as session:
                session.add(Note(body="async dropped"))
                await add_job_async(session, "notify", {"note": "async dropped"})
                await session.rollback()
            async with AsyncSession(engine) as session, session.begin():
                await add_jobs_async(session, [JobSpec("many", {"i": 1})])
            async with engine.connect() as conn:
                await add_job_async(conn, "conn_committed")
                await conn.commit()
                await add_job_async(conn, "conn_rolled_back")
                await conn.rollback()
        finally:
            await engine.dispose()

    asyncio.run(main())
    assert state(db) == (
        ["async kept"],
        [("notify", {"note": "async kept"}), ("many", {"i": 1}), ("conn_committed", {})],
    )

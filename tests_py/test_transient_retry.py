"""Serialization failures (SQLSTATE 40001) are retried (errands._retry), provoked for
real: the database runs every transaction in REPEATABLE READ, and a concurrent
transaction updates the job row the call is waiting for; when it commits, the
waiting statement fails with "could not serialize access due to concurrent update"
and runs again."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from worker_support import wait_until

import errands
from errands import Helpers, task


@pytest.fixture
def rr_db(db: str) -> Iterator[str]:
    with psycopg.connect(db, autocommit=True) as admin:
        name = admin.info.dbname
        admin.execute(
            f"ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'"
        )
    yield db


def _wait_for_lock_wait(conn: psycopg.Connection[Any]) -> None:
    wait_until(
        lambda: (
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchone()
            == (1,)
        ),
        10,
        "a statement waiting for the row lock",
    )


def test_worker_utils_call_is_retried_after_a_serialization_failure(
    rr_db: str, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="errands")
    job = errands.add_job(conn, "t", {})
    other = psycopg.connect(rr_db)
    try:
        other.execute("UPDATE errands._jobs SET updated_at = now() WHERE id = %s", [job.id])
        result: list[Any] = []

        def reschedule() -> None:
            with errands.SyncWorkerUtils(rr_db) as utils:
                result.append(utils.reschedule_jobs([job.id], priority=7))

        thread = threading.Thread(target=reschedule)
        thread.start()
        _wait_for_lock_wait(conn)
        other.commit()
        thread.join(10)
    finally:
        other.close()
    assert [j.priority for j in result[0]] == [7]  # no SerializationFailure raised
    assert any("hit 40001" in r.getMessage() for r in caplog.records)


def test_async_worker_utils_call_is_retried_after_a_serialization_failure(
    rr_db: str, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="errands")
    job = errands.add_job(conn, "t", {})

    async def main() -> list[Any]:
        async with errands.WorkerUtils(rr_db) as utils:
            other = await psycopg.AsyncConnection.connect(rr_db)
            await other.execute(
                "UPDATE errands._jobs SET updated_at = now() WHERE id = %s", [job.id]
            )
            call = asyncio.ensure_future(utils.permanently_fail_jobs([job.id], "given up"))
            await asyncio.to_thread(_wait_for_lock_wait, conn)
            await other.commit()
            await other.close()
            return await asyncio.wait_for(call, 10)

    failed = asyncio.run(main())
    assert [(j.id, j.last_error) for j in failed] == [(job.id, "given up")]
    assert any("hit 40001" in r.getMessage() for r in caplog.records)


def test_worker_report_is_retried_after_a_serialization_failure(
    rr_db: str, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The completion's DELETE waits for the concurrent update and fails with 40001;
    it runs again at once: the job is completed, nothing is logged as a failure."""
    caplog.set_level(logging.INFO, logger="errands")
    started, release = threading.Event(), threading.Event()

    @task
    def blocked(payload: Any, helpers: Helpers) -> None:
        started.set()
        release.wait(10)

    job = errands.add_job(conn, "blocked", {})
    worker = threading.Thread(target=lambda: asyncio.run(errands.run_once(rr_db, [blocked])))
    worker.start()
    other = psycopg.connect(rr_db)
    try:
        assert started.wait(10)
        other.execute("UPDATE errands._jobs SET updated_at = now() WHERE id = %s", [job.id])
        release.set()  # the task returns; its completion waits for our row lock
        _wait_for_lock_wait(conn)
        other.commit()
        worker.join(15)
    finally:
        release.set()
        other.close()
    assert not worker.is_alive()
    assert conn.execute("SELECT count(*) FROM errands._jobs").fetchone() == (0,)
    messages = [r.getMessage() for r in caplog.records]
    assert any("hit 40001" in m for m in messages), messages
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], messages

"""SQLAlchemy 2: enqueue in a Session's (or Connection's) transaction.

The job is added on the psycopg connection under the session, in its transaction:
``session.commit()`` commits it with the ORM changes, ``session.rollback()`` (or an
exception in ``with session.begin():``) drops it.  The engine must use the psycopg
(3) driver: ``create_engine("postgresql+psycopg://...")`` or
``create_async_engine("postgresql+psycopg://...")``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from errands import enqueue

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from errands.enqueue import JobOptions
    from errands.job import Job, SpecLike

__all__ = ["add_job", "add_job_async", "add_jobs", "add_jobs_async"]


def _in_transaction(bind: Session | Connection) -> Connection:
    if isinstance(bind, Session):
        return bind.connection()  # begins the session's transaction if need be
    if not isinstance(bind, Connection):
        raise TypeError(
            f"errands: expected a SQLAlchemy Session or Connection, got {type(bind).__name__}"
        )
    if not bind.in_transaction():
        # What executing a statement does (autobegin): conn.commit() then commits the job.
        bind.begin()
    return bind


def _driver(raw: Any, dialect: str) -> Any:
    if not isinstance(raw, (psycopg.Connection, psycopg.AsyncConnection)):
        raise TypeError(
            f"errands: the engine must use the psycopg driver (postgresql+psycopg://), "
            f"not {dialect}"
        )
    return raw


def psycopg_connection(bind: Session | Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under ``bind``, with its transaction begun."""
    conn = _in_transaction(bind)
    raw = _driver(conn.connection.driver_connection, _dialect_name(conn))
    if not isinstance(raw, psycopg.Connection):
        raise TypeError("errands: an async engine's connection: use add_job_async")
    return raw


async def psycopg_connection_async(
    bind: AsyncSession | AsyncConnection,
) -> psycopg.AsyncConnection[Any]:
    """The psycopg async connection under ``bind``, with its transaction begun."""
    if isinstance(bind, AsyncSession):
        conn = await bind.connection()
    elif isinstance(bind, AsyncConnection):
        conn = bind
        if not conn.in_transaction():
            await conn.begin()
    else:
        raise TypeError(
            "errands: expected a SQLAlchemy AsyncSession or AsyncConnection, "
            f"got {type(bind).__name__}"
        )
    raw = _driver((await conn.get_raw_connection()).driver_connection, _dialect_name(conn))
    if not isinstance(raw, psycopg.AsyncConnection):
        raise TypeError("errands: a sync engine's connection: use add_job")
    return raw


def _dialect_name(conn: Connection | AsyncConnection) -> str:
    dialect = conn.dialect
    return f"{dialect.name}+{dialect.driver}"


def add_job(
    bind: Session | Connection,
    identifier: str,
    payload: Any = None,
    **options: Unpack[JobOptions],
) -> Job:
    """Add one job in ``bind``'s transaction (a :class:`~sqlalchemy.orm.Session` or a
    :class:`~sqlalchemy.engine.Connection`); options as for :func:`errands.add_job`."""
    return enqueue.add_job(psycopg_connection(bind), identifier, payload, **options)


def add_jobs(
    bind: Session | Connection,
    specs: Iterable[SpecLike],
    *,
    job_key_preserve_run_at: bool = False,
) -> list[Job]:
    """Add many jobs in one statement in ``bind``'s transaction (:func:`errands.add_jobs`)."""
    return enqueue.add_jobs(
        psycopg_connection(bind), specs, job_key_preserve_run_at=job_key_preserve_run_at
    )


async def add_job_async(
    bind: AsyncSession | AsyncConnection,
    identifier: str,
    payload: Any = None,
    **options: Unpack[JobOptions],
) -> Job:
    """:func:`add_job` for an :class:`~sqlalchemy.ext.asyncio.AsyncSession` or
    :class:`~sqlalchemy.ext.asyncio.AsyncConnection`."""
    raw = await psycopg_connection_async(bind)
    return await enqueue.add_job_async(raw, identifier, payload, **options)


async def add_jobs_async(
    bind: AsyncSession | AsyncConnection,
    specs: Iterable[SpecLike],
    *,
    job_key_preserve_run_at: bool = False,
) -> list[Job]:
    """:func:`add_jobs` for an async session or connection."""
    raw = await psycopg_connection_async(bind)
    return await enqueue.add_jobs_async(raw, specs, job_key_preserve_run_at=job_key_preserve_run_at)

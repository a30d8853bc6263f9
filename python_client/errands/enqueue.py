"""Transactional enqueueing on the caller's own psycopg connection.

The job is added inside whatever transaction ``conn`` is in: roll the
transaction back and the job was never there; commit it and workers are woken
(NOTIFY is delivered at commit).  Use :func:`add_job` / :func:`add_jobs` with a
:class:`psycopg.Connection` and :func:`add_job_async` / :func:`add_jobs_async`
with a :class:`psycopg.AsyncConnection`.

With ``ERRANDS_PREPARE=0`` these never use server-side prepared statements
(PgBouncer in transaction pooling mode); otherwise psycopg follows the
connection's ``prepare_threshold`` (connect with ``prepare_threshold=None`` to
turn preparing off for that connection).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Json

from errands import _queries as q
from errands._connections import execute_prepare
from errands._json import job_cursor
from errands.job import Job, JobKeyMode, SpecLike, specs_json


def add_job_params(
    identifier: str,
    payload: Any = None,
    *,
    queue_name: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    job_key: str | None = None,
    priority: int | None = None,
    flags: Sequence[str] | None = None,
    job_key_mode: JobKeyMode | None = None,
    timeout: float | timedelta | None = None,
) -> dict[str, Any]:
    """The parameters of :data:`errands._queries.ADD_JOB`."""
    return {
        "identifier": identifier,
        "payload": Json(payload) if payload is not None else None,
        "queue_name": queue_name,
        "run_at": run_at,
        "max_attempts": max_attempts,
        "job_key": job_key,
        "priority": priority,
        "flags": list(flags) if flags is not None else None,
        "job_key_mode": job_key_mode,
        "timeout": timedelta(seconds=timeout) if isinstance(timeout, (int, float)) else timeout,
    }


def add_jobs_params(specs: Iterable[SpecLike], job_key_preserve_run_at: bool) -> dict[str, Any]:
    """The parameters of :data:`errands._queries.ADD_JOBS`."""
    return {"specs": specs_json(specs), "preserve_run_at": job_key_preserve_run_at}


def add_job(
    conn: psycopg.Connection[Any],
    identifier: str,
    payload: Any = None,
    *,
    queue_name: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    job_key: str | None = None,
    priority: int | None = None,
    flags: Sequence[str] | None = None,
    job_key_mode: JobKeyMode | None = None,
    timeout: float | timedelta | None = None,
) -> Job:
    """Add one job through ``conn``, in its current transaction (``errands.add_job``).

    ``None`` arguments take the SQL defaults: payload ``{}``, run_at now, max_attempts
    25, priority 0, job_key_mode ``replace``.  ``run_at`` should be timezone-aware.
    """
    params = add_job_params(
        identifier, payload, queue_name=queue_name, run_at=run_at, max_attempts=max_attempts,
        job_key=job_key, priority=priority, flags=flags, job_key_mode=job_key_mode,
        timeout=timeout,
    )  # fmt: skip
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(q.ADD_JOB, params, prepare=execute_prepare())
        row = cur.fetchone()
    assert row is not None
    return Job.from_row(row)


def add_jobs(
    conn: psycopg.Connection[Any],
    specs: Iterable[SpecLike],
    *,
    job_key_preserve_run_at: bool = False,
) -> list[Job]:
    """Add many jobs in one statement (``errands.add_jobs``); one job per spec, in order."""
    with job_cursor(conn) as cur:
        cur.execute(
            q.ADD_JOBS, add_jobs_params(specs, job_key_preserve_run_at), prepare=execute_prepare()
        )
        return cur.fetchall()


async def add_job_async(
    conn: psycopg.AsyncConnection[Any],
    identifier: str,
    payload: Any = None,
    *,
    queue_name: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    job_key: str | None = None,
    priority: int | None = None,
    flags: Sequence[str] | None = None,
    job_key_mode: JobKeyMode | None = None,
    timeout: float | timedelta | None = None,
) -> Job:
    """:func:`add_job` for an :class:`psycopg.AsyncConnection`."""
    params = add_job_params(
        identifier, payload, queue_name=queue_name, run_at=run_at, max_attempts=max_attempts,
        job_key=job_key, priority=priority, flags=flags, job_key_mode=job_key_mode,
        timeout=timeout,
    )  # fmt: skip
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(q.ADD_JOB, params, prepare=execute_prepare())
        row = await cur.fetchone()
    assert row is not None
    return Job.from_row(row)


async def add_jobs_async(
    conn: psycopg.AsyncConnection[Any],
    specs: Iterable[SpecLike],
    *,
    job_key_preserve_run_at: bool = False,
) -> list[Job]:
    """:func:`add_jobs` for an :class:`psycopg.AsyncConnection`."""
    async with job_cursor(conn) as cur:
        await cur.execute(
            q.ADD_JOBS, add_jobs_params(specs, job_key_preserve_run_at), prepare=execute_prepare()
        )
        return await cur.fetchall()

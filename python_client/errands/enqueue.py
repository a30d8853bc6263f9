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

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypedDict

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Json

from errands import _queries as q
from errands import _trace_state
from errands._connections import execute_prepare
from errands._json import job_cursor
from errands.job import Job, JobKeyMode, SpecLike, specs_json

if TYPE_CHECKING:
    from typing_extensions import Unpack

Query: TypeAlias = "sql.SQL | sql.Composed"


class JobOptions(TypedDict, total=False):
    """The options of one job: the keyword arguments of every ``add_job`` (this
    module's, :class:`~errands.WorkerUtils`' and :class:`~errands.Helpers`').

    An option left out or ``None`` takes the SQL default (see ``errands.add_job``).
    """

    queue_name: str | None
    """A named queue: its jobs run one at a time, in order."""
    run_at: datetime | None
    """When the job is due (default now); should be timezone-aware."""
    max_attempts: int | None
    """Tries before the job fails for good (default 25)."""
    job_key: str | None
    """Replace or deduplicate the job holding this key (see ``job_key_mode``)."""
    priority: int | None
    """Lower runs first (default 0)."""
    flags: Sequence[str] | None
    """Flags a worker can forbid (``forbidden_flags``)."""
    job_key_mode: JobKeyMode | None
    """What a job with an existing key does (default ``replace``)."""
    timeout: float | timedelta | None
    """How long each try may run, in seconds or as a timedelta (overrides the task's)."""
    depends_on: Sequence[int] | None
    """Ids of jobs this one waits for (state ``waiting``) until each has completed."""


#: The option names, each an ``ADD_JOB`` parameter; all NULL unless given.
_OPTION_NAMES: Final = frozenset(JobOptions.__optional_keys__)
_NO_OPTIONS: Final = dict.fromkeys(_OPTION_NAMES)


def add_job_params(
    identifier: str, payload: Any = None, **options: Unpack[JobOptions]
) -> dict[str, Any]:
    """The parameters of :data:`errands._queries.ADD_JOB`.

    Raises :exc:`TypeError` for a keyword that is not a :class:`JobOptions` name (the
    callers take ``**options``, so Python itself does not check them).
    """
    if not options.keys() <= _OPTION_NAMES:
        unknown = ", ".join(repr(k) for k in sorted(options.keys() - _OPTION_NAMES))
        raise TypeError(f"add_job() got an unexpected keyword argument {unknown}")
    params: dict[str, Any] = {**_NO_OPTIONS, **options}
    params["identifier"] = identifier
    params["payload"] = Json(payload) if payload is not None else None
    flags = options.get("flags")
    if flags is not None:
        params["flags"] = list(flags)
    depends_on = options.get("depends_on")
    if depends_on is not None:
        params["depends_on"] = list(depends_on)
    timeout = options.get("timeout")
    if isinstance(timeout, (int, float)):
        params["timeout"] = timedelta(seconds=timeout)
    return params


def add_jobs_params(specs: Iterable[SpecLike], job_key_preserve_run_at: bool) -> dict[str, Any]:
    """The parameters of :data:`errands._queries.ADD_JOBS`."""
    return {"specs": specs_json(specs), "preserve_run_at": job_key_preserve_run_at}


def add_job(
    conn: psycopg.Connection[Any],
    identifier: str,
    payload: Any = None,
    **options: Unpack[JobOptions],
) -> Job:
    """Add one job through ``conn``, in its current transaction (``errands.add_job``).

    The keyword arguments are the :class:`JobOptions`; ``None`` takes the SQL
    default (payload ``{}``, run_at now, max_attempts 25, priority 0, job_key_mode
    ``replace``).  ``run_at`` should be timezone-aware.
    """
    params = add_job_params(identifier, payload, **options)
    if _trace_state.tracer is not None:
        from errands.tracing import traced

        run = functools.partial(_add_job_rows, conn)
        return traced([identifier], options.get("queue_name"), params, q.ADD_JOB, run)[0]
    return _add_job_rows(conn, q.ADD_JOB, params)[0]


def _add_job_rows(conn: psycopg.Connection[Any], query: Query, params: dict[str, Any]) -> list[Job]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params, prepare=execute_prepare())
        row = cur.fetchone()
    assert row is not None
    return [Job.from_row(row)]


def add_jobs(
    conn: psycopg.Connection[Any],
    specs: Iterable[SpecLike],
    *,
    job_key_preserve_run_at: bool = False,
) -> list[Job]:
    """Add many jobs in one statement (``errands.add_jobs``); one job per spec, in order."""
    if _trace_state.tracer is not None:
        from errands.tracing import spec_identifiers, traced

        specs = list(specs)
        params = add_jobs_params(specs, job_key_preserve_run_at)
        run = functools.partial(_add_jobs_rows, conn)
        return traced(spec_identifiers(specs), None, params, q.ADD_JOBS, run)
    return _add_jobs_rows(conn, q.ADD_JOBS, add_jobs_params(specs, job_key_preserve_run_at))


def _add_jobs_rows(
    conn: psycopg.Connection[Any], query: Query, params: dict[str, Any]
) -> list[Job]:
    with job_cursor(conn) as cur:
        cur.execute(query, params, prepare=execute_prepare())
        return cur.fetchall()


async def add_job_async(
    conn: psycopg.AsyncConnection[Any],
    identifier: str,
    payload: Any = None,
    **options: Unpack[JobOptions],
) -> Job:
    """:func:`add_job` for an :class:`psycopg.AsyncConnection`."""
    params = add_job_params(identifier, payload, **options)
    if _trace_state.tracer is not None:
        from errands.tracing import traced_async

        run = functools.partial(_add_job_rows_async, conn)
        jobs = await traced_async([identifier], options.get("queue_name"), params, q.ADD_JOB, run)
        return jobs[0]
    return (await _add_job_rows_async(conn, q.ADD_JOB, params))[0]


async def _add_job_rows_async(
    conn: psycopg.AsyncConnection[Any], query: Query, params: dict[str, Any]
) -> list[Job]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params, prepare=execute_prepare())
        row = await cur.fetchone()
    assert row is not None
    return [Job.from_row(row)]


async def add_jobs_async(
    conn: psycopg.AsyncConnection[Any],
    specs: Iterable[SpecLike],
    *,
    job_key_preserve_run_at: bool = False,
) -> list[Job]:
    """:func:`add_jobs` for an :class:`psycopg.AsyncConnection`."""
    if _trace_state.tracer is not None:
        from errands.tracing import spec_identifiers, traced_async

        specs = list(specs)
        params = add_jobs_params(specs, job_key_preserve_run_at)
        run = functools.partial(_add_jobs_rows_async, conn)
        return await traced_async(spec_identifiers(specs), None, params, q.ADD_JOBS, run)
    return await _add_jobs_rows_async(
        conn, q.ADD_JOBS, add_jobs_params(specs, job_key_preserve_run_at)
    )


async def _add_jobs_rows_async(
    conn: psycopg.AsyncConnection[Any], query: Query, params: dict[str, Any]
) -> list[Job]:
    async with job_cursor(conn) as cur:
        await cur.execute(query, params, prepare=execute_prepare())
        return await cur.fetchall()

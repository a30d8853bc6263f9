"""Administration from Python: :class:`WorkerUtils` (async) and :class:`SyncWorkerUtils`.

Both wrap the ``errands.*`` SQL functions one to one (each call is one statement,
run again when it fails with a serialization failure or deadlock)::

    async with WorkerUtils(dsn) as utils:
        job = await utils.add_job("emails.send", {"to": "a@example.com"})
        await utils.reschedule_jobs([job.id], run_at=datetime.now(timezone.utc))

    with SyncWorkerUtils(dsn) as utils:
        utils.complete_jobs([job.id])
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from errands import _queries as q
from errands._connections import PoolSource, connect_kwargs
from errands._json import job_cursor
from errands._prune import PRUNE_BATCH, prune_once
from errands._retry import retry_transient, retry_transient_sync
from errands.enqueue import add_job_params, add_jobs_params
from errands.limits import Limits, QueueInfo, TaskLimitInfo
from errands.job import FinishedJob, Job, SpecLike

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from errands.enqueue import JobOptions

DEFAULT_CLEANUP = ("GC_JOB_QUEUES",)

T = TypeVar("T")


def _jobs(rows: Iterable[dict[str, Any]]) -> list[Job]:
    return [Job.from_row(row) for row in rows if row["id"] is not None]


def _reschedule_params(
    ids: Iterable[int],
    run_at: datetime | None,
    priority: int | None,
    attempts: int | None,
    max_attempts: int | None,
) -> dict[str, Any]:
    return {
        "ids": list(ids), "run_at": run_at, "priority": priority, "attempts": attempts,
        "max_attempts": max_attempts,
    }  # fmt: skip


def _cleanup_params(tasks: Iterable[str], keep: Iterable[str]) -> dict[str, Any]:
    return {"tasks": list(tasks), "keep": list(keep)}


class WorkerUtils:
    """Async administration helpers over a small pool (or your own pool, left open)."""

    def __init__(
        self,
        conninfo_or_pool: str | AsyncConnectionPool[Any],
        *,
        max_size: int = 4,
        prepare: bool | None = None,
    ):
        """``prepare=False``: no server-side prepared statements on the pool this object
        opens (PgBouncer in transaction pooling mode); default ``$ERRANDS_PREPARE``."""
        given = conninfo_or_pool if isinstance(conninfo_or_pool, AsyncConnectionPool) else None
        self._given = given
        self._conninfo = conninfo_or_pool if isinstance(conninfo_or_pool, str) else None
        self._max_size = max_size
        self._kwargs = connect_kwargs(prepare)
        self._pool: AsyncConnectionPool[Any] | None = self._given
        self._lock = asyncio.Lock()

    async def _get_pool(self) -> AsyncConnectionPool[Any]:
        async with self._lock:
            if self._pool is None:
                pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                    self._conninfo or "", min_size=1, max_size=self._max_size,
                    kwargs=self._kwargs, open=False, name="errands-utils",
                )  # fmt: skip
                await pool.open(wait=True, timeout=15.0)
                self._pool = pool
            return self._pool

    async def _rows(
        self, query: sql.SQL | sql.Composed, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return await self._run(query, params, lambda conn: conn.cursor(row_factory=dict_row))

    async def _job_rows(self, query: sql.SQL | sql.Composed, params: dict[str, Any]) -> list[Job]:
        return await self._run(query, params, job_cursor)

    async def _run(
        self,
        query: sql.SQL | sql.Composed,
        params: dict[str, Any],
        cursor: Callable[[psycopg.AsyncConnection[Any]], psycopg.AsyncCursor[T]],
    ) -> list[T]:
        pool = await self._get_pool()

        async def run() -> list[T]:
            async with pool.connection() as conn:
                cur = cursor(conn)
                await cur.execute(query, params)
                return await cur.fetchall() if cur.description else []

        # One statement in autocommit: rerun on a serialization failure or deadlock.
        return await retry_transient(run)

    async def close(self) -> None:
        """Close the pool this object opened (not one you passed in)."""
        if self._pool is not None and self._pool is not self._given:
            await self._pool.close()
        self._pool = self._given

    async def __aenter__(self) -> WorkerUtils:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def install(self) -> None:
        """Install or upgrade the errands schema."""
        from errands._install import install_async  # lazily: see errands/__init__.py

        pool = await self._get_pool()
        async with pool.connection() as conn:
            await install_async(conn)

    async def add_job(
        self,
        identifier: str,
        payload: Any = None,
        **options: Unpack[JobOptions],
    ) -> Job:
        """``errands.add_job`` (see :func:`errands.add_job`)."""
        params = add_job_params(identifier, payload, **options)
        return _jobs(await self._rows(q.ADD_JOB, params))[0]

    async def add_jobs(
        self, specs: Iterable[SpecLike], *, job_key_preserve_run_at: bool = False
    ) -> list[Job]:
        """``errands.add_jobs``: one job per spec, in order."""
        return await self._job_rows(q.ADD_JOBS, add_jobs_params(specs, job_key_preserve_run_at))

    async def remove_job(self, job_key: str) -> Job | None:
        """Delete the job holding ``job_key`` (a running one just loses its key)."""
        jobs = _jobs(await self._rows(q.REMOVE_JOB, {"job_key": job_key}))
        return jobs[0] if jobs else None

    async def complete_jobs(self, ids: Iterable[int]) -> list[Job]:
        return _jobs(await self._rows(q.COMPLETE_JOBS, {"ids": list(ids)}))

    async def permanently_fail_jobs(
        self, ids: Iterable[int], message: str | None = None
    ) -> list[Job]:
        params = {"ids": list(ids), "message": message}
        return _jobs(await self._rows(q.PERMANENTLY_FAIL_JOBS, params))

    async def reschedule_jobs(
        self,
        ids: Iterable[int],
        *,
        run_at: datetime | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        max_attempts: int | None = None,
    ) -> list[Job]:
        params = _reschedule_params(ids, run_at, priority, attempts, max_attempts)
        return _jobs(await self._rows(q.RESCHEDULE_JOBS, params))

    async def force_unlock_workers(self, worker_ids: Iterable[str]) -> None:
        await self._rows(q.FORCE_UNLOCK_WORKERS, {"worker_ids": list(worker_ids)})

    async def cleanup(
        self,
        tasks: Iterable[str] = DEFAULT_CLEANUP,
        *,
        task_identifiers_to_keep: Iterable[str] = (),
    ) -> dict[str, int]:
        """Run cleanup tasks (``DELETE_PERMAFAILED_JOBS``, ``GC_JOB_QUEUES``,
        ``GC_TASK_IDENTIFIERS``); returns rows deleted per task."""
        rows = await self._rows(q.CLEANUP, _cleanup_params(tasks, task_identifiers_to_keep))
        return {row["task"]: row["deleted"] for row in rows}

    async def get_finished_job(self, job_id: int) -> FinishedJob | None:
        """The ``errands.finished_jobs`` row of ``job_id`` (its state and result), or
        ``None`` when it has not finished, is unknown, or its retention has passed."""
        rows = await self._rows(q.GET_FINISHED_JOB, {"id": job_id})
        return FinishedJob.from_row(rows[0]) if rows else None

    async def prune_finished_jobs(self, max_rows: int = PRUNE_BATCH) -> int:
        """Delete expired finished jobs (as live workers do); returns how many."""
        return await prune_once(PoolSource(await self._get_pool()), max_rows)

    # Flow control (docs/flow-control.md): a name may be a 'prefix*' pattern.
    async def set_queue_limits(self, queue_name: str, limits: Limits) -> None:
        await self._rows(q.SET_QUEUE_LIMITS, limits.params(queue_name))

    async def set_task_limits(self, task_identifier: str, limits: Limits) -> None:
        await self._rows(q.SET_TASK_LIMITS, limits.params(task_identifier))

    async def pause_queue(self, queue_name: str) -> None:
        await self._rows(q.PAUSE_QUEUE, {"name": queue_name})

    async def resume_queue(self, queue_name: str) -> None:
        await self._rows(q.RESUME_QUEUE, {"name": queue_name})

    async def pause_task(self, task_identifier: str) -> None:
        await self._rows(q.PAUSE_TASK, {"name": task_identifier})

    async def resume_task(self, task_identifier: str) -> None:
        await self._rows(q.RESUME_TASK, {"name": task_identifier})

    async def queues(self) -> list[QueueInfo]:
        return [QueueInfo.from_row(r) for r in await self._rows(q.QUEUES, {})]

    async def task_limits(self) -> list[TaskLimitInfo]:
        return [TaskLimitInfo.from_row(r) for r in await self._rows(q.TASK_LIMITS, {})]


class SyncWorkerUtils:
    """Blocking :class:`WorkerUtils` over one connection (thread-safe; opened lazily)."""

    def __init__(self, conninfo: str, *, prepare: bool | None = None) -> None:
        self._conninfo = conninfo
        self._kwargs = connect_kwargs(prepare)
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()

    def _rows(self, query: sql.SQL | sql.Composed, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self._run(query, params, lambda conn: conn.cursor(row_factory=dict_row))

    def _job_rows(self, query: sql.SQL | sql.Composed, params: dict[str, Any]) -> list[Job]:
        return self._run(query, params, job_cursor)

    def _run(
        self,
        query: sql.SQL | sql.Composed,
        params: dict[str, Any],
        cursor: Callable[[psycopg.Connection[Any]], psycopg.Cursor[T]],
    ) -> list[T]:
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._conninfo, **self._kwargs)
            conn = self._conn

            def run() -> list[T]:
                with cursor(conn) as cur:
                    cur.execute(query, params)
                    return cur.fetchall() if cur.description else []

            # One statement in autocommit: rerun on a serialization failure or deadlock.
            return retry_transient_sync(run)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SyncWorkerUtils:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def install(self) -> None:
        """Install or upgrade the errands schema."""
        from errands._install import install  # lazily: see errands/__init__.py

        with psycopg.connect(self._conninfo, **self._kwargs) as conn:
            install(conn)

    def add_job(
        self,
        identifier: str,
        payload: Any = None,
        **options: Unpack[JobOptions],
    ) -> Job:
        params = add_job_params(identifier, payload, **options)
        return _jobs(self._rows(q.ADD_JOB, params))[0]

    def add_jobs(
        self, specs: Iterable[SpecLike], *, job_key_preserve_run_at: bool = False
    ) -> list[Job]:
        return self._job_rows(q.ADD_JOBS, add_jobs_params(specs, job_key_preserve_run_at))

    def remove_job(self, job_key: str) -> Job | None:
        jobs = _jobs(self._rows(q.REMOVE_JOB, {"job_key": job_key}))
        return jobs[0] if jobs else None

    def complete_jobs(self, ids: Iterable[int]) -> list[Job]:
        return _jobs(self._rows(q.COMPLETE_JOBS, {"ids": list(ids)}))

    def permanently_fail_jobs(self, ids: Iterable[int], message: str | None = None) -> list[Job]:
        return _jobs(self._rows(q.PERMANENTLY_FAIL_JOBS, {"ids": list(ids), "message": message}))

    def reschedule_jobs(
        self,
        ids: Iterable[int],
        *,
        run_at: datetime | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        max_attempts: int | None = None,
    ) -> list[Job]:
        params = _reschedule_params(ids, run_at, priority, attempts, max_attempts)
        return _jobs(self._rows(q.RESCHEDULE_JOBS, params))

    def force_unlock_workers(self, worker_ids: Iterable[str]) -> None:
        self._rows(q.FORCE_UNLOCK_WORKERS, {"worker_ids": list(worker_ids)})

    def cleanup(
        self,
        tasks: Iterable[str] = DEFAULT_CLEANUP,
        *,
        task_identifiers_to_keep: Iterable[str] = (),
    ) -> dict[str, int]:
        rows = self._rows(q.CLEANUP, _cleanup_params(tasks, task_identifiers_to_keep))
        return {row["task"]: row["deleted"] for row in rows}

    def get_finished_job(self, job_id: int) -> FinishedJob | None:
        rows = self._rows(q.GET_FINISHED_JOB, {"id": job_id})
        return FinishedJob.from_row(rows[0]) if rows else None

    def set_queue_limits(self, queue_name: str, limits: Limits) -> None:
        self._rows(q.SET_QUEUE_LIMITS, limits.params(queue_name))

    def set_task_limits(self, task_identifier: str, limits: Limits) -> None:
        self._rows(q.SET_TASK_LIMITS, limits.params(task_identifier))

    def pause_queue(self, queue_name: str) -> None:
        self._rows(q.PAUSE_QUEUE, {"name": queue_name})

    def resume_queue(self, queue_name: str) -> None:
        self._rows(q.RESUME_QUEUE, {"name": queue_name})

    def pause_task(self, task_identifier: str) -> None:
        self._rows(q.PAUSE_TASK, {"name": task_identifier})

    def resume_task(self, task_identifier: str) -> None:
        self._rows(q.RESUME_TASK, {"name": task_identifier})

    def queues(self) -> list[QueueInfo]:
        return [QueueInfo.from_row(r) for r in self._rows(q.QUEUES, {})]

    def task_limits(self) -> list[TaskLimitInfo]:
        return [TaskLimitInfo.from_row(r) for r in self._rows(q.TASK_LIMITS, {})]

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
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from errands import _queries as q
from errands import _trace_state
from errands._connections import PoolSource, connect_kwargs, params_of_pool
from errands._json import job_cursor
from errands._prune import PRUNE_BATCH, prune_once
from errands._retry import retry_transient
from errands._wait import POLL_INTERVAL, wait_async
from errands.enqueue import add_job_params, add_jobs_params
from errands.flows import AddedFlow, FlowLike, added_flow
from errands.job import FinishedJob, Job, SpecLike
from errands.limits import Limits, QueueInfo, TaskLimitInfo

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from errands.enqueue import JobOptions

from errands._sync_utils import SyncWorkerUtils
from errands._utils_common import (
    DEFAULT_CLEANUP,
    T,
    _cleanup_params,
    _filter_params,
    _flow_params,
    _jobs,
    _reschedule_params,
)

__all__ = ["DEFAULT_CLEANUP", "SyncWorkerUtils", "WorkerUtils"]


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
        if _trace_state.tracer is not None:
            from errands.tracing import traced_async

            queue = options.get("queue_name")
            return (await traced_async([identifier], queue, params, q.ADD_JOB, self._job_rows))[0]
        return _jobs(await self._rows(q.ADD_JOB, params))[0]

    async def add_jobs(
        self, specs: Iterable[SpecLike], *, job_key_preserve_run_at: bool = False
    ) -> list[Job]:
        """``errands.add_jobs``: one job per spec, in order."""
        if _trace_state.tracer is not None:
            from errands.tracing import spec_identifiers, traced_async

            specs = list(specs)
            params = add_jobs_params(specs, job_key_preserve_run_at)
            return await traced_async(
                spec_identifiers(specs), None, params, q.ADD_JOBS, self._job_rows
            )
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

    async def cancel_jobs(self, ids: Iterable[int]) -> dict[int, str]:
        """Cancel jobs (``errands.cancel_jobs``): each id maps to its outcome,
        ``cancelled``, ``cancel_requested`` (running: it ends cancelled once its
        worker hears it), ``already_finished`` or ``unknown``."""
        rows = await self._rows(q.CANCEL_JOBS, {"ids": list(ids)})
        return {row["id"]: row["outcome"] for row in rows}

    async def find_job_ids(
        self, task: str, *, queue: str | None = None, state: str | None = None
    ) -> list[int]:
        """Ids of the unfinished jobs of ``task`` (in ``queue``, in ``state``)."""
        rows = await self._rows(q.SELECT_JOB_IDS, _filter_params(task, queue, state))
        return [row["id"] for row in rows]

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

    async def wait_for_job(
        self, job_id: int, *, timeout: float | None = None, poll_interval: float = POLL_INTERVAL
    ) -> FinishedJob:
        """Wait until job ``job_id`` finishes and return its ``errands.finished_jobs`` row
        (state ``completed``, its ``result``).  Raises :class:`errands.JobFailed` (failed
        for good) or :class:`errands.JobCancelled`, both carrying the job,
        :class:`errands.UnknownJob`, or :class:`errands.WaitTimeout` after ``timeout``
        seconds (``None``: no limit).  It LISTENs on its own connection (not the
        pool's) and reads the state again on each notification naming the job, or
        every ``poll_interval`` seconds.  Needs ``grant_read``."""
        conninfo, kwargs = self._conninfo, self._kwargs
        if conninfo is None:
            pool = await self._get_pool()
            conninfo, kwargs = params_of_pool(pool)
        async with await psycopg.AsyncConnection.connect(conninfo, **kwargs) as conn:
            return await wait_async(conn, job_id, timeout, poll_interval)

    async def add_flow(self, flow: FlowLike) -> AddedFlow:
        """Add a flow (``errands.add_flow``; see :mod:`errands.flows`)."""
        return added_flow(await self._rows(q.ADD_FLOW, _flow_params(flow)))

    async def dependency_results(self, job_id: int) -> dict[str, Any]:
        """Results of the jobs ``job_id`` depends on (``errands.dependency_results``)."""
        rows = await self._rows(q.DEPENDENCY_RESULTS, {"job_id": job_id})
        return dict(rows[0]["dependency_results"] or {})

    async def cancel_flow(self, flow_id: int) -> list[int]:
        """Cancel a flow's steps that are not running; returns the job ids cancelled."""
        return [row["id"] for row in await self._rows(q.CANCEL_FLOW, {"flow_id": flow_id})]

    async def flow_steps(self, flow_id: int) -> list[dict[str, Any]]:
        """The ``errands.flow_steps`` rows of a flow, in step order."""
        return await self._rows(q.FLOW_STEPS, {"flow_id": flow_id})

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



"""Blocking administration: :class:`SyncWorkerUtils` (see :mod:`errands.utils`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from errands import _queries as q
from errands import _trace_state
from errands._connections import connect_kwargs
from errands._json import job_cursor
from errands._retry import retry_transient_sync
from errands._utils_common import (
    DEFAULT_CLEANUP,
    T,
    _cleanup_params,
    _filter_params,
    _flow_params,
    _jobs,
    _reschedule_params,
)
from errands._wait import POLL_INTERVAL, wait_sync
from errands.enqueue import add_job_params, add_jobs_params
from errands.flows import AddedFlow, FlowLike, added_flow
from errands.job import FinishedJob, Job, SpecLike
from errands.limits import Limits, QueueInfo, TaskLimitInfo

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from errands.enqueue import JobOptions


class SyncWorkerUtils:
    """Blocking :class:`~errands.utils.WorkerUtils` over one connection (thread-safe;
    opened lazily)."""

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
        if _trace_state.tracer is not None:
            from errands.tracing import traced

            queue = options.get("queue_name")
            return traced([identifier], queue, params, q.ADD_JOB, self._job_rows)[0]
        return _jobs(self._rows(q.ADD_JOB, params))[0]

    def add_jobs(
        self, specs: Iterable[SpecLike], *, job_key_preserve_run_at: bool = False
    ) -> list[Job]:
        if _trace_state.tracer is not None:
            from errands.tracing import spec_identifiers, traced

            specs = list(specs)
            params = add_jobs_params(specs, job_key_preserve_run_at)
            return traced(spec_identifiers(specs), None, params, q.ADD_JOBS, self._job_rows)
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

    def cancel_jobs(self, ids: Iterable[int]) -> dict[int, str]:
        rows = self._rows(q.CANCEL_JOBS, {"ids": list(ids)})
        return {row["id"]: row["outcome"] for row in rows}

    def find_job_ids(
        self, task: str, *, queue: str | None = None, state: str | None = None
    ) -> list[int]:
        rows = self._rows(q.SELECT_JOB_IDS, _filter_params(task, queue, state))
        return [row["id"] for row in rows]

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

    def wait_for_job(
        self, job_id: int, *, timeout: float | None = None, poll_interval: float = POLL_INTERVAL
    ) -> FinishedJob:
        """:meth:`WorkerUtils.wait_for_job`, blocking (on its own connection: the
        other methods stay usable from other threads meanwhile)."""
        with psycopg.connect(self._conninfo, **self._kwargs) as conn:
            return wait_sync(conn, job_id, timeout, poll_interval)

    def add_flow(self, flow: FlowLike) -> AddedFlow:
        return added_flow(self._rows(q.ADD_FLOW, _flow_params(flow)))

    def dependency_results(self, job_id: int) -> dict[str, Any]:
        rows = self._rows(q.DEPENDENCY_RESULTS, {"job_id": job_id})
        return dict(rows[0]["dependency_results"] or {})

    def cancel_flow(self, flow_id: int) -> list[int]:
        return [row["id"] for row in self._rows(q.CANCEL_FLOW, {"flow_id": flow_id})]

    def flow_steps(self, flow_id: int) -> list[dict[str, Any]]:
        return self._rows(q.FLOW_STEPS, {"flow_id": flow_id})

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

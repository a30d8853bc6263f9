"""What a task gets besides its payload: :class:`Helpers`."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Iterable, MutableMapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import TYPE_CHECKING, Any

import psycopg

from errands.enqueue import add_job, add_job_async, add_jobs, add_jobs_async
from errands.flows import (
    AddedFlow,
    FlowLike,
    add_flow,
    add_flow_async,
    dependency_results,
    dependency_results_async,
)
from errands.job import Job, SpecLike

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from errands._connections import ConnectionSource, SyncConnections
    from errands.enqueue import JobOptions

job_logger = logging.getLogger("errands.job")


class AbortSignal:
    """Set when a job should stop: its cancellation was requested
    (``errands.cancel_jobs``), or the worker gives up waiting for running jobs at
    shutdown.

    Each job has its own (``helpers.abort``); the worker's (``Worker.abort``) is set
    at shutdown together with every running job's.  Sync tasks (in threads) poll
    :meth:`is_set` or block in :meth:`wait`; async tasks ``await
    signal.wait_async()``.  A cancelled job ends ``cancelled`` whatever its task
    does next; at shutdown, shortly after it is set, async tasks are cancelled and
    jobs still running are failed with "worker shutdown".
    """

    # One lock for every signal: a worker makes one signal per job, and creating
    # a threading.Event and a Lock for each cost ~2.5 us, most of the per-job
    # overhead it adds; the Event is made only when a thread waits.
    _lock = threading.Lock()

    __slots__ = ("_event", "_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Block until set (sync tasks); returns whether it is set."""
        with self._lock:
            if self._set:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    async def wait_async(self) -> None:
        """Wait until set (async tasks)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._set:
                return
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, future))
        await future

    def set(self) -> None:
        """Set the signal (the worker does this; safe from any thread)."""
        with self._lock:
            self._set = True
            event = self._event
            waiters, self._waiters = self._waiters, []
        if event is not None:
            event.set()
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class JobLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Logger whose messages start with ``[task #id]`` and carry ``job_id``,
    ``task_identifier`` and ``attempt`` as record attributes (for JSON logs)."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **(kwargs.get("extra") or {})}
        return f"[{extra.get('task_identifier')} #{extra.get('job_id')}] {msg}", kwargs


class Helpers:
    """Passed to every task as its second argument.

    * ``job`` -- the :class:`~errands.job.Job` being run (``attempts`` is 1-based);
    * ``logger`` -- a logger tagged with the job (see :class:`JobLogger`);
    * ``abort`` -- this job's :class:`AbortSignal` (set when the job is cancelled
      while it runs, and at the shutdown timeout);
    * ``connection()`` -- for **async** tasks: ``async with helpers.connection() as
      conn`` borrows a connection of the worker's pool (autocommit unless you open
      ``conn.transaction()``; committed at block exit otherwise);
    * ``sync_connection()`` -- for **sync** tasks (they run in threads): ``with
      helpers.sync_connection() as conn`` borrows a blocking connection from a small
      pool opened on first use;
    * ``add_job`` / ``add_jobs`` (async) and ``add_job_sync`` / ``add_jobs_sync``
      (sync tasks): enqueue more jobs, with the parameters of ``errands.add_job``;
    * ``add_flow`` / ``add_flow_sync``: add a flow that starts only if this try of
      the job completes (fan-out / fan-in); ``dependency_results`` /
      ``dependency_results_sync``: the results of the jobs this one depended on.
    """

    def __init__(
        self,
        job: Job,
        *,
        source: ConnectionSource,
        sync_connections: SyncConnections,
        abort: AbortSignal,
        worker_id: str,
    ) -> None:
        self.job = job
        self.worker_id = worker_id
        self.abort = abort
        self._source = source
        self._sync = sync_connections

    @functools.cached_property
    def logger(self) -> JobLogger:
        """A logger tagged with the job (built on first use: most tasks never log)."""
        job = self.job
        return JobLogger(
            job_logger,
            {"job_id": job.id, "task_identifier": job.task_identifier, "attempt": job.attempts},
        )

    def connection(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """``async with helpers.connection() as conn``: a pool connection (async tasks)."""
        return self._source.connection()

    def sync_connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """``with helpers.sync_connection() as conn``: a blocking connection (sync tasks)."""
        return self._sync.connection()

    async def add_job(
        self,
        identifier: str,
        payload: Any = None,
        **options: Unpack[JobOptions],
    ) -> Job:
        """Add a job (see :func:`errands.add_job`)."""
        async with self.connection() as conn:
            return await add_job_async(conn, identifier, payload, **options)

    async def add_jobs(
        self, specs: Iterable[SpecLike], *, job_key_preserve_run_at: bool = False
    ) -> list[Job]:
        """Add many jobs in one statement (see :func:`errands.add_jobs`)."""
        async with self.connection() as conn:
            return await add_jobs_async(
                conn, specs, job_key_preserve_run_at=job_key_preserve_run_at
            )

    async def add_flow(self, flow: FlowLike) -> AddedFlow:
        """Add a flow (see :func:`errands.flows.add_flow`) whose steps without
        dependencies also wait for this try of the job to complete: if it fails,
        the whole flow is cancelled, so a retried task never leaves a second copy."""
        async with self.connection() as conn:
            return await add_flow_async(conn, flow, parent=self.job.id)

    async def dependency_results(self) -> dict[str, Any]:
        """Results of the jobs this one depended on, by step name (flows) or job id."""
        async with self.connection() as conn:
            return await dependency_results_async(conn, self.job.id)

    def add_flow_sync(self, flow: FlowLike) -> AddedFlow:
        """:meth:`add_flow` for sync tasks."""
        with self.sync_connection() as conn:
            return add_flow(conn, flow, parent=self.job.id)

    def dependency_results_sync(self) -> dict[str, Any]:
        """:meth:`dependency_results` for sync tasks."""
        with self.sync_connection() as conn:
            return dependency_results(conn, self.job.id)

    def add_job_sync(
        self,
        identifier: str,
        payload: Any = None,
        **options: Unpack[JobOptions],
    ) -> Job:
        """:meth:`add_job` for sync tasks."""
        with self.sync_connection() as conn:
            return add_job(conn, identifier, payload, **options)

    def add_jobs_sync(
        self, specs: Iterable[SpecLike], *, job_key_preserve_run_at: bool = False
    ) -> list[Job]:
        """:meth:`add_jobs` for sync tasks."""
        with self.sync_connection() as conn:
            return add_jobs(conn, specs, job_key_preserve_run_at=job_key_preserve_run_at)

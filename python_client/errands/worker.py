"""The worker: LISTEN/NOTIFY -> fetch -> execute -> report.

One :class:`Worker` runs up to ``concurrency`` jobs at a time: async tasks on the
event loop, sync tasks in a pool of ``concurrency`` daemon threads.  Every state
change is a call to an ``errands.*`` SQL function; this module only decides *when*
to call them.

Fetching.  One ``get_jobs`` call asks for as many jobs as there are free slots.
The worker fetches again at once when that call filled every free slot or a
notification arrived meanwhile; otherwise it waits for a notification (continuous
mode: one dedicated LISTEN connection on ``errands:jobs``), for ``poll_interval``
(jobs becoming due, retries), or for a finished job of a named queue (its queue
is free again).  A job's slot is freed when its task ends (for a job of a named
queue, once its outcome is in the database, which frees the queue).

Run-once mode (``continuous=False``) does not listen: it fetches until a fetch
finds nothing while no job is running, then stops.

``listen=False`` (continuous mode, for PgBouncer in transaction pooling mode): no
LISTEN connection and no session state at all; jobs are found by polling every
``poll_interval``, and the worker registers without the session advisory lock
(``errands._heartbeat.register_sessionless``), so only its heartbeat keeps it alive.

Shutdown (:meth:`Worker.request_stop`): stop fetching (jobs an in-flight fetch
returns are handed back with ``worker_return_jobs``); wait up to
``shutdown_timeout`` for running jobs; then set the abort signal, cancel async
tasks, abandon sync ones and fail every job still running with ``WorkerShutdown:
worker shutdown`` (it will be retried).  :meth:`Worker.force_stop` skips the wait.
Tasks get :data:`ABORT_GRACE` seconds between the abort signal and cancellation to
stop by themselves (their own outcome is then recorded).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import psycopg
from psycopg.rows import dict_row

from errands import _heartbeat
from errands import _queries as q
from errands._connections import ConnectionSource, SyncConnections
from errands._reporter import Reporter, ReportError
from errands._threads import DaemonThreadPool
from errands.events import Event, Events
from errands.helpers import AbortSignal, Helpers
from errands.job import Job
from errands.logs import error_message
from errands.tasks import TaskInfo, TaskRegistry

logger = logging.getLogger("errands.worker")

ForbiddenFlags: TypeAlias = (
    Sequence[str] | Callable[[], "Awaitable[Sequence[str] | None] | Sequence[str] | None"] | None
)
"""Flags a fetched job must not have: a list, or a (sync or async) function
returning one, called before every fetch."""

STALE_LOCK_AGE = "4 hours"
ABORT_GRACE = 0.5
"""Seconds between setting the abort signal and cancelling/failing running jobs."""
SWEEP_INTERVAL = (480.0, 600.0)
"""Seconds between two ``reset_locked`` sweeps (random in this range)."""


class WorkerShutdown(Exception):
    """The error recorded for jobs still running when the worker stopped."""


class BatchFailure(Exception):
    """Some items of a batch job failed; ``errors`` holds one exception per failed item."""

    def __init__(self, errors: Sequence[BaseException]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(error_message(e) for e in self.errors))


def failure_message(error: BaseException) -> str:
    """The ``last_error`` text of a failed try."""
    if isinstance(error, BatchFailure):
        return "Batch failures:\n" + "\n".join(error_message(e) for e in error.errors)
    return error_message(error)


def new_worker_id() -> str:
    return "worker-" + secrets.token_hex(9)


@dataclass(eq=False)
class _Running:
    job: Job
    started: float = field(default_factory=time.perf_counter)
    task: asyncio.Task[None] | None = None
    inner: asyncio.Future[Any] | None = None
    settled: bool = False
    """The outcome has been decided (by the job itself or by a forced shutdown)."""


class Worker:
    """Runs jobs of ``tasks`` from the database behind ``source`` (see module doc)."""

    def __init__(
        self,
        source: ConnectionSource,
        tasks: TaskRegistry,
        *,
        conninfo: str,
        connect_kwargs: Mapping[str, Any] | None = None,
        concurrency: int = 10,
        poll_interval: float = 2.0,
        forbidden_flags: ForbiddenFlags = None,
        shutdown_timeout: float = 30.0,
        events: Events | None = None,
        continuous: bool = True,
        worker_id: str | None = None,
        heartbeat_interval: float = 5.0,
        heartbeat_timeout: float = 30.0,
        listen: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"errands: concurrency must be at least 1, got {concurrency}")
        if poll_interval <= 0:
            raise ValueError(f"errands: poll_interval must be positive, got {poll_interval}")
        if len(tasks) == 0:
            raise ValueError("errands: no tasks to run")
        self.worker_id = worker_id or new_worker_id()
        self.events = events if events is not None else Events()
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.shutdown_timeout = shutdown_timeout
        self.continuous = continuous
        self.listen = listen
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self._source = source
        self._tasks = tasks
        self._identifiers = tasks.identifiers
        self._forbidden = forbidden_flags
        self._conninfo = conninfo
        self._connect_kwargs = {**(connect_kwargs or {}), "autocommit": True}
        self._abort = AbortSignal()
        self._threads = DaemonThreadPool(concurrency)
        self._sync = SyncConnections(conninfo, self._connect_kwargs, concurrency)
        self._reporter = Reporter(source, self.worker_id, on_error=self._on_report_error)
        self._running: dict[int, _Running] = {}
        # Tasks of jobs whose slot is free but whose outcome is still being written.
        self._recording: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._want_fetch = True
        self._stopping = False
        self._force = asyncio.Event()
        self._stop_signal: str | None = None
        self._main: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []
        self._listen_conn: psycopg.AsyncConnection[Any] | None = None
        # Crashed-worker rescue (errands._heartbeat): continuous mode only.
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._registered = False

    # --- public ------------------------------------------------------------------------

    @property
    def abort(self) -> AbortSignal:
        return self._abort

    @property
    def running_jobs(self) -> list[Job]:
        return [rec.job for rec in self._running.values()]

    async def start(self) -> None:
        """Sweep stale locks, start listening (continuous mode) and start working."""
        if self._main is not None:
            raise RuntimeError("errands: worker already started")
        await self._sweep()
        if self.continuous and self.listen:
            self._listen_conn = await self._connect_listener()
        elif self.continuous:  # no session to hold a lock on: heartbeat-only liveness
            self._registered = await _heartbeat.register_sessionless(self._source, self.worker_id)
        self._reporter.start()
        if self.continuous:
            if self.listen:
                self._background.append(
                    asyncio.create_task(self._listen_loop(), name="errands-listen")
                )
            self._background.append(asyncio.create_task(self._sweep_loop(), name="errands-sweep"))
            self._heartbeat_task = asyncio.create_task(
                _heartbeat.heartbeat_loop(
                    self._source, self.worker_id,
                    heartbeat_interval=self.heartbeat_interval,
                    heartbeat_timeout=self.heartbeat_timeout,
                    emit=self._emit, on_rescued=lambda _count: self._nudge(),
                    session_lock=self.listen,
                ),
                name="errands-heartbeat",
            )  # fmt: skip
        self._emit(
            "worker:start", data={"tasks": self._identifiers, "concurrency": self.concurrency}
        )
        self._main = asyncio.create_task(self._run(), name=f"errands-{self.worker_id}")

    def request_stop(self, signal: str | None = None) -> None:
        """Begin a graceful shutdown (idempotent)."""
        if not self._stopping:
            self._stopping = True
            self._stop_signal = signal
            self._emit("worker:shutdown", data={"signal": signal} if signal else {})
            self._wakeup.set()

    def force_stop(self) -> None:
        """Stop now: abort and fail the running jobs without waiting for them."""
        self.request_stop()
        self._force.set()

    async def wait(self) -> None:
        """Wait until the worker has stopped; raises what crashed it, if anything."""
        if self._main is None:
            raise RuntimeError("errands: worker not started")
        await asyncio.shield(self._main)

    @property
    def stopping(self) -> bool:
        """Whether a shutdown was requested (or the worker ran out of jobs, once mode)."""
        return self._stopping

    @property
    def done(self) -> bool:
        return self._main is not None and self._main.done()

    # --- main loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        error: BaseException | None = None
        try:
            await self._fetch_loop()
        except Exception as exc:
            error = exc
            logger.exception("errands: worker %s crashed", self.worker_id)
        finally:
            self._stopping = True
            await self._shutdown()
            self._emit("worker:stop", error=error)
            await self.events.drain()
        if error is not None:
            raise error

    async def _fetch_loop(self) -> None:
        next_poll = 0.0
        while not self._stopping:
            self._wakeup.clear()
            free = self.concurrency - len(self._running)
            now = time.monotonic()
            if free > 0 and (self._want_fetch or (self.continuous and now >= next_poll)):
                self._want_fetch = False
                try:
                    jobs = await self._fetch(free)
                except Exception as exc:
                    if not self.continuous:
                        raise
                    self._emit("worker:fetch:error", error=exc)
                    logger.warning("errands: fetching jobs failed: %s", error_message(exc))
                    next_poll = time.monotonic() + self.poll_interval
                    continue
                next_poll = time.monotonic() + self.poll_interval
                if self.stopping:  # a property: mypy must not assume it is still False
                    await self._return_jobs(jobs)
                    return
                for job in jobs:
                    self._start_job(job)
                if len(jobs) >= free:
                    self._want_fetch = True
                if not self.continuous and not self._running and not self._want_fetch:
                    return
                continue
            if not self.continuous and not self._running and not self._want_fetch:
                return
            timeout = max(0.0, next_poll - now) if self.continuous and free > 0 else None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _forbidden_flags(self) -> list[str] | None:
        value: Any = self._forbidden
        if callable(value):
            value = value()
            if inspect.isawaitable(value):
                value = await value
        return list(value) if value else None

    async def _fetch(self, count: int) -> list[Job]:
        params = {
            "worker_id": self.worker_id,
            "tasks": self._identifiers,
            "count": count,
            "forbidden": await self._forbidden_flags(),
        }
        async with self._source.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(q.GET_JOBS, params)
            return [Job.from_row(row) for row in await cur.fetchall()]

    async def _return_jobs(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        ids = [job.id for job in jobs]
        try:
            async with self._source.connection() as conn:
                await conn.execute(q.WORKER_RETURN_JOBS, {"worker_id": self.worker_id, "ids": ids})
        except Exception as exc:
            logger.error(
                "errands: could not return unstarted jobs %s (%s); they stay locked by %s",
                ids, error_message(exc), self.worker_id,
            )  # fmt: skip
            return
        self._emit("worker:return", data={"job_ids": ids})

    # --- running a job -----------------------------------------------------------------

    def _start_job(self, job: Job) -> None:
        rec = _Running(job)
        self._running[job.id] = rec
        rec.task = asyncio.create_task(
            self._run_job(rec, self._tasks.get(job.task_identifier)), name=f"errands-job-{job.id}"
        )

    async def _run_job(self, rec: _Running, info: TaskInfo | None) -> None:
        job = rec.job
        try:
            self._emit("job:start", job=job)
            rec.started = time.perf_counter()
            error: BaseException | None = None
            replacement: list[Any] | None = None
            try:
                if info is None:
                    raise LookupError(f"unsupported task {job.task_identifier!r}")
                helpers = Helpers(
                    job, source=self._source, sync_connections=self._sync, abort=self._abort,
                    worker_id=self.worker_id,
                )  # fmt: skip
                if info.is_async:
                    rec.inner = asyncio.ensure_future(info.fn(job.payload, helpers))
                else:
                    rec.inner = self._threads.run(info.fn, job.payload, helpers)
                await asyncio.wait({rec.inner})
                result = rec.inner.result()
                if inspect.isawaitable(result):
                    result = await result
                error, replacement = await _batch_outcome(job.payload, result)
            except asyncio.CancelledError as exc:
                if rec.settled:
                    return
                error = exc
            except Exception as exc:
                error = exc
            if rec.settled:
                return
            rec.settled = True
            duration = time.perf_counter() - rec.started
            if job.queue_name is None:
                # Free the slot now: the reporter owns the outcome (the job stays
                # locked until its batch is written), so the next fetch overlaps
                # the flush. A queued job keeps its slot: its queue stays locked
                # until the outcome is written.
                self._release(rec)
            await self._record(job, error, replacement, duration)
        finally:
            self._release(rec)

    def _release(self, rec: _Running) -> None:
        if self._running.pop(rec.job.id, None) is None:
            return
        if rec.task is not None and not rec.task.done():
            self._recording.add(rec.task)
            rec.task.add_done_callback(self._recording.discard)
        if not self.continuous or rec.job.queue_name is not None:
            self._want_fetch = True  # its queue is free / more may be runnable now
        self._wakeup.set()

    async def _record(
        self, job: Job, error: BaseException | None, replacement: Any, duration: float
    ) -> None:
        """Report the outcome, then emit the events that depend on it."""
        try:
            if error is None:
                self._emit("job:success", job=job, duration=duration)
                if not await self._reporter.complete(job.id):
                    self._emit("job:lock_lost", job=job)
            else:
                data = {"batch_errors": error.errors} if isinstance(error, BatchFailure) else {}
                self._emit("job:error", job=job, error=error, duration=duration, data=data)
                row = await self._reporter.fail(job.id, failure_message(error), replacement)
                if row is None:
                    self._emit("job:lock_lost", job=job)
                elif not row.has_attempts_left:
                    self._emit("job:failed", job=row, error=error, data=data)
        except ReportError:
            return  # logged by the reporter
        self._emit("job:complete", job=job, error=error, duration=duration)

    # --- shutdown ----------------------------------------------------------------------

    async def _shutdown(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        # The LISTEN connection holds the worker's advisory lock and the heartbeat
        # keeps running: other workers must not rescue the jobs still finishing.
        await self._wait_running()
        if self._running:
            await self._abort_running()
        await self._reporter.close()
        # Jobs released before their outcome was written: close() flushed it.
        await asyncio.gather(*self._recording, return_exceptions=True)
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
        if self._registered:
            await _heartbeat.unregister(self._source, self.worker_id)
        if self._listen_conn is not None:
            await self._listen_conn.close()
        self._threads.shutdown()
        await asyncio.to_thread(self._sync.close)

    async def _wait_running(self) -> None:
        deadline = time.monotonic() + self.shutdown_timeout
        forced = asyncio.ensure_future(self._force.wait())
        try:
            while self._running and not forced.done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                tasks = {rec.task for rec in self._running.values() if rec.task is not None}
                await asyncio.wait(
                    {*tasks, forced}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            forced.cancel()
            await asyncio.gather(forced, return_exceptions=True)

    async def _abort_running(self) -> None:
        self._abort.set()
        # A moment for tasks that watch the abort signal to wind down by themselves.
        tasks = {rec.task for rec in self._running.values() if rec.task is not None}
        await asyncio.wait(tasks, timeout=ABORT_GRACE)
        records = [rec for rec in self._running.values() if not rec.settled]
        self._emit("worker:shutdown:force", data={"job_ids": [rec.job.id for rec in records]})
        for rec in records:
            rec.settled = True
            if rec.inner is not None:
                rec.inner.cancel()
        now = time.perf_counter()
        await asyncio.gather(
            *(
                self._record(rec.job, WorkerShutdown("worker shutdown"), None, now - rec.started)
                for rec in records
            )
        )
        tasks = {rec.task for rec in self._running.values() if rec.task is not None}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5.0)
            for task in pending:
                logger.warning("errands: %s did not stop when cancelled", task.get_name())
                task.cancel()

    # --- LISTEN, sweep, events ---------------------------------------------------------

    def _nudge(self) -> None:
        self._want_fetch = True
        self._wakeup.set()

    async def _connect_listener(self) -> psycopg.AsyncConnection[Any]:
        self._emit("pool:listen:connecting")
        conn = await psycopg.AsyncConnection.connect(self._conninfo, **self._connect_kwargs)
        try:
            await conn.execute(q.LISTEN)
        except BaseException:
            await conn.close()
            raise
        # The advisory lock lives with this connection: take it on every (re)connect.
        if await _heartbeat.register(conn, self.worker_id):
            self._registered = True
        self._emit("pool:listen:success")
        return conn

    async def _listen_loop(self) -> None:
        attempt = 0
        while True:
            try:
                if self._listen_conn is None:
                    self._listen_conn = await self._connect_listener()
                    attempt = 0
                    self._nudge()  # notifications may have been missed meanwhile
                async for _ in self._listen_conn.notifies():
                    self._nudge()
                    self._emit("pool:listen:notification")
                raise psycopg.OperationalError("the LISTEN connection stopped")
            except Exception as exc:
                self._emit("pool:listen:error", error=exc)
                logger.warning("errands: LISTEN connection failed: %s", error_message(exc))
                if self._listen_conn is not None:
                    conn, self._listen_conn = self._listen_conn, None
                    await conn.close()
                attempt += 1
                await asyncio.sleep(min(60.0, 0.05 * math.exp(attempt)) * random.uniform(0.5, 1))

    async def _sweep(self) -> None:
        async with self._source.connection() as conn:
            cur = await conn.execute(q.RESET_LOCKED, {"older_than": STALE_LOCK_AGE})
            row = await cur.fetchone()
        self._emit("worker:sweep", data={"count": row[0] if row else 0})

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(random.uniform(*SWEEP_INTERVAL))
            try:
                await self._sweep()
            except Exception as exc:
                self._emit("worker:sweep:error", error=exc)
                logger.warning("errands: reset_locked failed: %s", error_message(exc))

    def _on_report_error(self, error: BaseException, job_ids: list[int]) -> None:
        self._emit("worker:report:error", error=error, data={"job_ids": job_ids})

    def _emit(
        self,
        name: str,
        *,
        job: Job | None = None,
        error: BaseException | None = None,
        duration: float | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        self.events.emit(Event(name, self.worker_id, job, error, duration, data or {}))


async def _batch_outcome(
    payload: Any, result: Any
) -> tuple[BaseException | None, list[Any] | None]:
    """Batch jobs: a list payload and a list result of the same length.  Entries that
    are exceptions (or awaitables that raise) are failed items: returns the failure
    and the replacement payload (the failed items); ``(None, None)`` otherwise."""
    if not isinstance(payload, list) or not isinstance(result, (list, tuple)):
        return None, None
    if len(result) != len(payload):
        logger.warning(
            "errands: a batch job returned %d results for %d payload items; "
            "treating the job as a success", len(result), len(payload),
        )  # fmt: skip
        return None, None
    awaited = await asyncio.gather(*(_settle(entry) for entry in result), return_exceptions=True)
    failed = [i for i, value in enumerate(awaited) if isinstance(value, BaseException)]
    if not failed:
        return None, None
    errors = [awaited[i] for i in failed]
    return BatchFailure([e for e in errors if isinstance(e, BaseException)]), [
        payload[i] for i in failed
    ]


async def _settle(entry: Any) -> Any:
    if isinstance(entry, BaseException):
        raise entry
    if inspect.isawaitable(entry):
        return await entry
    return entry

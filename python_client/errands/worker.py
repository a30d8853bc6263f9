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
import functools
import inspect
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias

import psycopg

from errands import _heartbeat, _json
from errands import _queries as q
from errands._connections import ConnectionSource, SyncConnections
from errands._reporter import Reporter, ReportError
from errands._retry import Backoff, Outage, is_connection_error, retry_transient
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

STALE_LOCK_AGE = q.STALE_LOCK_AGE
ABORT_GRACE = 0.5
"""Seconds between setting the abort signal and cancelling/failing running jobs."""
SWEEP_INTERVAL = (480.0, 600.0)
"""Seconds between two ``reset_locked`` sweeps (random in this range)."""
LOCAL_QUEUE_SIZE = 500
"""Default most jobs a worker holds fetched (locked) but not yet started."""
PREFETCH_WINDOW = 0.1
"""Seconds of work (at the recent task durations) the local queue aims to hold."""
LOCAL_QUEUE_TTL = 5.0
"""Buffered jobs not started for this many seconds (every slot busy) are handed back."""
LISTEN_KEEPALIVES: Mapping[str, Any] = {
    "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
}  # fmt: skip
"""libpq TCP keepalive settings of the LISTEN connection (the caller's win)."""


class WorkerShutdown(Exception):
    """The error recorded for jobs still running when the worker stopped."""


class TaskTimeout(Exception):
    """The error recorded for a try that ran longer than its timeout (the job's own,
    else ``@task(timeout=...)``)."""


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


class _Running:
    """A job in a slot (one per job: a plain class with slots, cheaper to make than a
    dataclass)."""

    __slots__ = ("inner", "job", "settled", "started", "task")

    def __init__(self, job: Job) -> None:
        self.job = job
        self.started = time.perf_counter()
        self.task: asyncio.Task[None] | None = None
        self.inner: asyncio.Future[Any] | None = None
        self.settled = False
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
        local_queue_size: int = LOCAL_QUEUE_SIZE,
        listen: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"errands: concurrency must be at least 1, got {concurrency}")
        if poll_interval <= 0:
            raise ValueError(f"errands: poll_interval must be positive, got {poll_interval}")
        if len(tasks) == 0:
            raise ValueError("errands: no tasks to run")
        if local_queue_size < 0:
            raise ValueError(
                f"errands: local_queue_size must not be negative, got {local_queue_size}"
            )
        _heartbeat.check_heartbeat(heartbeat_interval, heartbeat_timeout)
        self.local_queue_size = local_queue_size
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
        # Database faults (errands._retry): one warning per outage, backoff.
        self._outage = Outage(self.worker_id)
        self._fetch_backoff = Backoff()
        self._reporter = Reporter(
            source, self.worker_id, on_error=self._on_report_error, outage=self._outage
        )
        self._running: dict[int, _Running] = {}
        # The local queue: jobs fetched (locked, attempt counted) but not started.
        self._buffer: deque[tuple[Job, float]] = deque()  # (job, monotonic fetch start)
        # A buffered job older than this is never started but handed back: by then
        # the worker may have been cut off long enough to be declared dead, and its
        # jobs and queues given to others (below the heartbeat timeout).
        self._buffer_ttl = min(LOCAL_QUEUE_TTL, heartbeat_timeout / 2)
        self._last_dispatch = 0.0
        self._fetching: asyncio.Task[None] | None = None
        self._fetch_error: Exception | None = None
        self._avg_duration: float | None = None
        # Set when buffered jobs expired unstarted: fetch only for free slots until
        # a slot frees, or the worker would fetch the same jobs again and again.
        self._hold_prefetch = False
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
        self._lock_held = False  # the advisory lock, on the live LISTEN connection
        self._lock_lost = asyncio.Event()  # wakes the heartbeat loop

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
                    outage=self._outage,
                    lock_held=(lambda: self._lock_held) if self.listen else (lambda: True),
                    wake=self._lock_lost, session_lock=self.listen,
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
        retry_at = 0.0  # after a failed fetch: no fetch before this (backoff)
        while not self._stopping:
            self._wakeup.clear()
            self._dispatch()
            now = time.monotonic()
            if self._fetch_error is not None:
                error, self._fetch_error = self._fetch_error, None
                if not self.continuous:
                    raise error
                self._emit("worker:fetch:error", error=error)
                self._outage.failed("fetch", error, "fetching jobs")
                # Connection lost: back off (a LISTEN reconnect nudges a fetch).
                delay = (
                    self._fetch_backoff.next_delay()
                    if is_connection_error(error)
                    else self.poll_interval
                )
                retry_at = next_poll = now + delay
            if self._fetching is None and now >= retry_at:
                size = self._fetch_size()
                if size > 0 and (self._want_fetch or (self.continuous and now >= next_poll)):
                    self._want_fetch = False
                    next_poll = now + self.poll_interval
                    self._fetching = asyncio.create_task(self._fetch_into_buffer(size))
                    continue
                if not self.continuous and not self._running and not self._buffer:
                    return  # run-once: the last fetch found nothing and nothing runs
            deadline: float | None = None
            if self.continuous and self._fetching is None and self._fetch_size() > 0:
                deadline = max(next_poll, retry_at)
            if self._buffer and len(self._running) >= self.concurrency:
                expires = self._last_dispatch + self._buffer_ttl
                if now >= expires:
                    await self._return_buffer()
                    continue
                deadline = expires if deadline is None else min(deadline, expires)
            if deadline is None:
                await self._wakeup.wait()
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), max(0.0, deadline - now))

    def _dispatch(self) -> None:
        """Start buffered jobs in the free slots."""
        buffer = self._buffer
        if (
            buffer
            and len(self._running) < self.concurrency
            and not self._stopping
            and not self._without_lock()  # held until the LISTEN connection is back
        ):
            now = self._last_dispatch = time.monotonic()
            stale: list[Job] = []
            while buffer and len(self._running) < self.concurrency:
                job, fetched = buffer.popleft()
                if now - fetched > self._buffer_ttl:
                    stale.append(job)
                else:
                    self._start_job(job)
            if stale:
                self._hold_prefetch = True
                task = asyncio.create_task(self._return_jobs(stale))
                self._recording.add(task)  # awaited at shutdown like outcomes
                task.add_done_callback(self._recording.discard)

    def _fetch_size(self) -> int:
        """How many jobs the next fetch asks for: the free slots plus enough to keep
        about :data:`PREFETCH_WINDOW` seconds of work buffered (judged from recent
        task durations, at most ``local_queue_size``).  The buffer is topped up as
        soon as a quarter of it (at least ``concurrency`` jobs) is missing, so a
        fetch is nearly always in flight while the worker is busy, yet each one
        stays large."""
        target = 0
        if self.local_queue_size and self._avg_duration is not None and not self._hold_prefetch:
            per_job = max(self._avg_duration, 1e-6)
            target = min(self.local_queue_size, int(self.concurrency * PREFETCH_WINDOW / per_job))
        if self._buffer:  # then every slot is busy (see _dispatch)
            missing = target - len(self._buffer)
            return missing if missing >= max(self.concurrency, target // 4) else 0
        return self.concurrency - len(self._running) + target

    async def _fetch_into_buffer(self, count: int) -> None:
        started = time.monotonic()
        try:
            jobs = await self._fetch(count)
            self._fetch_backoff.reset()
            self._outage.recovered("fetch")
        except Exception as exc:
            self._fetch_error = exc
            jobs = []
        finally:
            self._fetching = None
            self._wakeup.set()
        if self._stopping:
            await self._return_jobs(jobs)
            return
        if jobs:
            if not self._buffer:
                self._last_dispatch = time.monotonic()
            self._buffer.extend((job, started) for job in jobs)
            self._dispatch()
        if len(jobs) >= count:
            self._want_fetch = True  # there may be more

    async def _return_buffer(self) -> None:
        """Hand back the jobs fetched but not started (their lock and attempt)."""
        jobs = [job for job, _ in self._buffer]
        self._buffer.clear()
        self._hold_prefetch = True
        await self._return_jobs(jobs)

    async def _forbidden_flags(self) -> list[str] | None:
        value: Any = self._forbidden
        if callable(value):
            value = value()
            if inspect.isawaitable(value):
                value = await value
        return list(value) if value else None

    def _without_lock(self) -> bool:
        """Whether the worker runs without its LISTEN connection, which holds its
        advisory lock: other workers may then declare it dead at any moment and
        release its jobs and queues, so it must neither fetch nor start jobs (they
        would run twice, and a named queue could run two jobs at once)."""
        return (
            self.continuous and self.listen and self._main is not None and self._listen_conn is None
        )

    async def _fetch(self, count: int) -> list[Job]:
        if self._without_lock():
            return []
        params = {
            "worker_id": self.worker_id,
            "tasks": self._identifiers,
            "count": count,
            "forbidden": await self._forbidden_flags(),
        }

        async def fetch() -> list[Job]:
            async with self._source.connection() as conn:
                cur = _json.job_cursor(conn)
                await cur.execute(q.GET_JOBS, params)
                return await cur.fetchall()

        return await retry_transient(fetch, "get_jobs")

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
        # Unnamed: formatting a name per job costs more than the job.
        rec.task = asyncio.create_task(self._run_job(rec, self._tasks.get(job.task_identifier)))

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
                limit = job.timeout if job.timeout is not None else info.timeout
                if info.is_async and limit is None:
                    # Awaited in this task: a forced shutdown cancels the task itself.
                    result = await info.fn(job.payload, helpers)
                else:
                    if info.is_async:
                        rec.inner = asyncio.ensure_future(info.fn(job.payload, helpers))
                    else:
                        rec.inner = self._threads.run(info.fn, job.payload, helpers)
                    # wait(), not await: cancelling this task must not cancel the inner
                    # future (the outcome is then decided by _abort_running).
                    done, _ = await asyncio.wait({rec.inner}, timeout=limit)
                    if not done:
                        await _give_up(rec.inner)
                        if not info.is_async:
                            self._threads.add_thread()  # the abandoned thread is still busy
                        raise TaskTimeout(f"task exceeded its {limit} s timeout")
                    result = rec.inner.result()
                if result is not None and inspect.isawaitable(result):
                    result = await result
                if isinstance(job.payload, list) and isinstance(result, (list, tuple)):
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
            avg = self._avg_duration
            self._avg_duration = duration if avg is None else avg + 0.1 * (duration - avg)
            if job.queue_name is None:
                # Free the slot now: the reporter owns the outcome (the job stays
                # locked until its batch is written), so the next job overlaps
                # the flush. A queued job keeps its slot: its queue stays locked
                # until the outcome is written.
                if error is None:
                    self._release(rec, recording=False)
                    self._emit("job:success", job=job, duration=duration)
                    self._reporter.complete_then(
                        job.id, functools.partial(self._completed, job, duration)
                    )
                    return
                self._release(rec)
            await self._record(job, error, replacement, duration)
        finally:
            self._release(rec)

    def _release(self, rec: _Running, *, recording: bool = True) -> None:
        """Free ``rec``'s slot; ``recording``: its task goes on to write the outcome."""
        if self._running.pop(rec.job.id, None) is None:
            return
        self._hold_prefetch = False
        if recording and rec.task is not None and not rec.task.done():
            self._recording.add(rec.task)
            rec.task.add_done_callback(self._recording.discard)
        if rec.job.queue_name is not None:
            self._want_fetch = True  # its queue is free: its next job may run now
        if self._buffer and not self._stopping:
            self._dispatch()  # the next buffered job takes the slot at once
        elif not self.continuous:
            self._want_fetch = True  # run-once: fetch until a fetch finds nothing
        # Wake the fetch loop only when there is something for it to decide.
        if (
            self._want_fetch
            or self._stopping
            or (self._fetching is None and self._fetch_size() > 0)
        ):
            self._wakeup.set()

    def _completed(self, job: Job, duration: float, written: bool | None) -> None:
        """The reporter wrote (or gave up on) the completion of a job without a queue."""
        if written is None:
            return  # logged by the reporter
        if not written:
            self._emit("job:lock_lost", job=job)
        self._emit("job:complete", job=job, duration=duration)

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
        if self._fetching is not None:  # it hands its jobs back itself (stopping)
            await asyncio.gather(self._fetching, return_exceptions=True)
        await self._return_buffer()
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
            elif rec.task is not None:
                rec.task.cancel()
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
        # TCP keepalives (unless the caller set them) so that a silently dropped
        # network ends the LISTEN connection in ~25 s instead of hours.
        kwargs = {**LISTEN_KEEPALIVES, **self._connect_kwargs}
        conn = await psycopg.AsyncConnection.connect(self._conninfo, **kwargs)
        try:
            await conn.execute(q.LISTEN)
            # The advisory lock lives with this connection: take it again on every
            # reconnect, at once, so that rescue_workers sees this worker alive.
            held = await _heartbeat.register(conn, self.worker_id)
        except BaseException:
            await conn.close()
            raise
        if held:
            self._registered = True
        self._lock_held = held
        self._emit("pool:listen:success")
        return conn

    async def _listen_loop(self) -> None:
        backoff = Backoff()
        while True:
            try:
                if self._listen_conn is None:
                    self._listen_conn = await self._connect_listener()
                    backoff.reset()
                    self._outage.recovered("listen")
                    # Jobs buffered while the lock was lost may have been rescued
                    # meanwhile: hand back those still ours (SQL skips the others).
                    if self._buffer:
                        await self._return_buffer()
                    self._nudge()  # catch up: notifications may have been missed meanwhile
                async for _ in self._listen_conn.notifies():
                    self._nudge()
                    self._emit("pool:listen:notification")
                raise psycopg.OperationalError("the LISTEN connection stopped")
            except Exception as exc:
                # The advisory lock went with the connection: heartbeat at once (and
                # often, until it is back) so that rescue_workers leaves our jobs alone.
                self._lock_held = False
                self._lock_lost.set()
                self._emit("pool:listen:error", error=exc)
                self._outage.failed("listen", exc, "LISTEN connection")
                if self._listen_conn is not None:
                    conn, self._listen_conn = self._listen_conn, None
                    await conn.close()
                await asyncio.sleep(backoff.next_delay())

    async def _sweep(self) -> None:
        async def sweep() -> Any:
            async with self._source.connection() as conn:
                cur = await conn.execute(q.RESET_LOCKED, {"older_than": STALE_LOCK_AGE})
                return await cur.fetchone()

        row = await retry_transient(sweep, "reset_locked")
        self._emit("worker:sweep", data={"count": row[0] if row else 0})

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(random.uniform(*SWEEP_INTERVAL))
            try:
                await self._sweep()
            except Exception as exc:
                self._emit("worker:sweep:error", error=exc)
                self._outage.failed("sweep", exc, "reset_locked", hold=False)

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
        if self.events.wants(name):
            self.events.emit(Event.fast(name, self.worker_id, job, error, duration, data or {}))


async def _give_up(inner: asyncio.Future[Any]) -> None:
    """A timed-out try: cancel an async task (a moment to clean up); a sync task's
    thread cannot be stopped: its result is abandoned and it finishes on its own."""
    inner.cancel()
    await asyncio.wait({inner}, timeout=ABORT_GRACE)
    if inner.done() and not inner.cancelled():
        inner.exception()  # retrieved: no "exception was never retrieved" warning


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

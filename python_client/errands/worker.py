"""The worker: LISTEN/NOTIFY -> fetch -> execute -> report.

One :class:`Worker` runs up to ``concurrency`` jobs at a time.  Every state change
is a call to an ``errands.*`` SQL function; the worker only decides *when* to call
them.  It wires together parts with one job each:

* :class:`~errands._local_queue.LocalQueue` -- jobs fetched but not started yet,
  how many to fetch ahead, when buffered jobs must be handed back;
* :class:`~errands._producer.Producer` -- the fetch loop: waits for a notification,
  a poll or a free named queue, fetches up to the free capacity, dispatches;
* :class:`~errands._executor.Executor` -- the slots: runs jobs (async tasks on the
  event loop, sync tasks in daemon threads), timeouts, batch outcomes;
* :class:`~errands._reporter.Reporter` -- writes outcomes in batches;
* :mod:`errands._locks` -- hands back unstarted jobs, sweeps stale locks
  (``reset_locked``);
* :class:`~errands._presence.Presence` -- continuous mode: the LISTEN connection
  with the worker's advisory lock, registration, heartbeat and rescue.

Run-once mode (``continuous=False``) does not listen or register: it fetches until
a fetch finds nothing while no job is running, then stops.

``listen=False`` (continuous mode, for PgBouncer in transaction pooling mode): no
LISTEN connection and no session state at all; jobs are found by polling every
``poll_interval``, and the worker registers without the session advisory lock, so
only its heartbeat keeps it alive.

Shutdown (:meth:`Worker.request_stop`): stop fetching (jobs an in-flight fetch
returns are handed back with ``worker_return_jobs``); wait up to
``shutdown_timeout`` for running jobs; then abort the rest
(:meth:`Executor.abort_running`: they fail with ``WorkerShutdown: worker
shutdown`` and will be retried).  :meth:`Worker.force_stop` skips the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import psycopg

from errands import _json
from errands import _queries as q
from errands._cancel_watch import CancelWatch
from errands._connections import ConnectionSource, SyncConnections
from errands._executor import ABORT_GRACE, Executor
from errands._local_queue import LocalQueue
from errands._locks import SWEEP_INTERVAL, return_jobs, sweep, sweep_loop
from errands._observe import observer_for
from errands._options import (
    ForbiddenFlags,
    WorkerOptions,
    WorkerOverrides,
    new_worker_id,
    resolve,
)
from errands._presence import LISTEN_KEEPALIVES, Presence
from errands._producer import Producer
from errands._prune import prune_loop
from errands._rate_wake import RateWake
from errands._reporter import Reporter
from errands._retry import Outage, retry_transient
from errands._task_results import BatchFailure, TaskTimeout, WorkerShutdown, failure_message
from errands._turns import Turns
from errands.events import Event, Events
from errands.helpers import AbortSignal
from errands.job import Job
from errands.tasks import TaskRegistry

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "ABORT_GRACE",
    "LISTEN_KEEPALIVES",
    "SWEEP_INTERVAL",
    "BatchFailure",
    "ForbiddenFlags",
    "TaskTimeout",
    "Worker",
    "WorkerShutdown",
    "failure_message",
    "new_worker_id",
]

logger = logging.getLogger("errands.worker")


class Worker:
    """Runs jobs of ``tasks`` from the database behind ``source`` (see module doc).

    ``options`` (a :class:`WorkerOptions`, with any field replaced by a keyword
    argument) says how; ``conninfo``/``connect_kwargs`` open the LISTEN connection
    and the blocking pool of sync tasks; ``continuous=False`` is run-once mode."""

    def __init__(
        self,
        source: ConnectionSource,
        tasks: TaskRegistry,
        options: WorkerOptions | None = None,
        *,
        conninfo: str,
        connect_kwargs: Mapping[str, Any] | None = None,
        events: Events | None = None,
        continuous: bool = True,
        **overrides: Unpack[WorkerOverrides],
    ) -> None:
        opts = resolve(options, overrides)
        if len(tasks) == 0:
            raise ValueError("errands: no tasks to run")
        self.options = opts
        self.worker_id = opts.worker_id or new_worker_id()
        self.events = events if events is not None else Events()
        self.concurrency = opts.concurrency
        self.continuous = continuous
        self._source = source
        self._identifiers = tasks.identifiers
        self._forbidden = opts.forbidden_flags
        kwargs = {**(connect_kwargs or {}), "autocommit": True}
        self._sync = SyncConnections(conninfo, kwargs, opts.concurrency)
        # Database faults (errands._retry): one warning per outage, backoff.
        self._outage = Outage(self.worker_id)
        self._reporter = Reporter(
            source, self.worker_id, on_error=self._on_report_error, outage=self._outage
        )
        # Buffered jobs are handed back well before the worker could be declared dead
        # (by then its jobs and queues may have been given to others).
        self._queue = LocalQueue(
            opts.concurrency, opts.local_queue_size, ttl_limit=opts.heartbeat_timeout / 2
        )
        self._executor = Executor(
            tasks, self._reporter, self._queue, source=source, sync_connections=self._sync,
            worker_id=self.worker_id, concurrency=opts.concurrency, emit=self._emit,
        )  # fmt: skip
        self._cancels = CancelWatch(
            source, self.worker_id, cancel=self._executor.cancel,
            busy=lambda: bool(self._executor.running),
        )  # fmt: skip
        self._room = asyncio.Event()  # set by the producer when it may have room
        self._presence: Presence | None = None
        self._turns: Turns | None = None
        if continuous:
            # Workers with forbidden flags fetch a different set of jobs than others
            # of their task set: they answer every notification themselves.
            turns = None
            turn_kwargs = {**LISTEN_KEEPALIVES, **kwargs}
            self._turn_connect = lambda: psycopg.AsyncConnection.connect(conninfo, **turn_kwargs)
            if opts.listen and not self._forbidden:
                turns = Turns(
                    self._identifiers, has_room=self._has_room, room=self._room,
                    on_notify=lambda: self._presence.notified() if self._presence else None,
                    on_turn=self._nudge,
                )  # fmt: skip
            self._turns = turns
            self._presence = Presence(
                source, self.worker_id, conninfo=conninfo, connect_kwargs=kwargs,
                listen=opts.listen, heartbeat_interval=opts.heartbeat_interval,
                heartbeat_timeout=opts.heartbeat_timeout, emit=self._emit,
                outage=self._outage, on_notify=self._nudge, on_reconnect=self._reconnected,
                on_cancel=self._cancels.notified, turns=turns is not None,
            )  # fmt: skip
        self._producer = Producer(
            self._queue, self._executor.running, concurrency=opts.concurrency,
            continuous=continuous, poll_interval=opts.poll_interval, fetch=self._fetch,
            start=self._executor.start, hand_back=self._return_jobs,
            may_start=self._presence.may_work if self._presence is not None else None,
            track=self._executor.track, emit=self._emit, outage=self._outage, room=self._room,
            completions_writing=lambda: self._executor.completions_writing,
            next_start=self._next_start if continuous else None,
        )  # fmt: skip
        self._rate_wake = RateWake(source, self._identifiers, opts.poll_interval)
        self._executor.on_release = self._producer.slot_freed
        observer = observer_for(
            opts, self._identifiers, self._executor.running.__len__, self._queue.__len__
        )
        self._executor.observer = self._observer = observer
        self._stats = observer.stats if observer is not None else None
        self._executor.on_written = self._producer.completion_written
        self._force = asyncio.Event()
        self._stop_signal: str | None = None
        self._main: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._cancel_poller: asyncio.Task[None] | None = None
        self._turner: asyncio.Task[None] | None = None

    # --- public ------------------------------------------------------------------------

    @property
    def abort(self) -> AbortSignal:
        return self._executor.abort

    @property
    def running_jobs(self) -> list[Job]:
        return self._executor.jobs

    async def start(self) -> None:
        """Sweep stale locks, register and listen (continuous mode), start working."""
        if self._main is not None:
            raise RuntimeError("errands: worker already started")
        await sweep(self._source, self._emit)
        if self._observer is not None:
            self._observer.serve(self.options)
        if self._presence is not None:
            try:
                await self._presence.register()
            except BaseException:
                if self._observer is not None:
                    self._observer.close()
                raise
        self._reporter.start()
        if self._presence is not None:
            self._sweeper = asyncio.create_task(
                sweep_loop(self._source, self._emit, self._outage), name="errands-sweep"
            )
            self._pruner = asyncio.create_task(
                prune_loop(self._source, self._emit, self._outage), name="errands-prune"
            )
            self._cancel_poller = asyncio.create_task(
                self._cancels.poll_loop(), name="errands-cancel-poll"
            )
            if self._turns is not None:
                self._turner = asyncio.create_task(
                    self._turns.serve(self._turn_connect, self._turn_error), name="errands-turns"
                )
            self._presence.start()
        self._emit(
            "worker:start", data={"tasks": self._identifiers, "concurrency": self.concurrency}
        )
        self._main = asyncio.create_task(self._run(), name=f"errands-{self.worker_id}")

    def request_stop(self, signal: str | None = None) -> None:
        """Begin a graceful shutdown (idempotent)."""
        if not self._producer.stopping:
            self._stop_signal = signal
            self._producer.stop()
            self._emit("worker:shutdown", data={"signal": signal} if signal else {})

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
        return self._producer.stopping

    @property
    def metrics_port(self) -> int | None:
        """The port of the metrics endpoint once started (the one chosen for 0)."""
        server = self._observer.server if self._observer is not None else None
        return server.port if server is not None else None

    @property
    def done(self) -> bool:
        return self._main is not None and self._main.done()

    # --- main task ---------------------------------------------------------------------

    async def _run(self) -> None:
        error: BaseException | None = None
        try:
            await self._producer.run()
        except Exception as exc:
            error = exc
            logger.exception("errands: worker %s crashed", self.worker_id)
        finally:
            self._producer.stopping = True
            await self._shutdown()
            self._emit("worker:stop", error=error)
            await self.events.drain()
        if error is not None:
            raise error

    async def _shutdown(self) -> None:
        # The turn first: idle workers must not wait for one this worker no longer takes.
        for task in (self._turner, self._sweeper, self._pruner, self._cancel_poller):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._presence is not None:
            await self._presence.stop_listening()
        await self._producer.finish()
        # The LISTEN connection holds the worker's advisory lock and the heartbeat
        # keeps running: other workers must not rescue the jobs still finishing.
        executor = self._executor
        await executor.wait_running(self.options.shutdown_timeout, self._force.wait())
        if executor.running:
            await executor.abort_running()
        await self._reporter.close()
        # Jobs released before their outcome was written: close() flushed it.
        await executor.wait_writes()
        if self._presence is not None:
            await self._presence.close()
        executor.threads.shutdown()
        await asyncio.to_thread(self._sync.close)
        if self._observer is not None:
            await asyncio.to_thread(self._observer.close)

    # --- what the parts call -----------------------------------------------------------

    def _has_room(self) -> bool:
        return self._producer.has_room()

    def _turn_error(self, exc: Exception) -> None:
        self._emit("pool:listen:error", error=exc)

    def _nudge(self) -> None:
        self._producer.nudge()

    async def _reconnected(self) -> None:
        # Jobs buffered while the lock was lost may have been rescued meanwhile:
        # hand back those still ours (SQL skips the others).
        if self._queue:
            await self._return_jobs(self._queue.drain())
        # Cancellation requests notified while the connection was away.
        with contextlib.suppress(Exception):
            await self._cancels.poll()

    async def _fetch(self, count: int) -> list[Job]:
        """``get_jobs`` for up to ``count`` jobs (none while the lock is lost)."""
        if self._presence is not None and not self._presence.may_work():
            return []
        params = {
            "worker_id": self.worker_id,
            "tasks": self._identifiers,
            "count": count,
            "forbidden": await self._forbidden_flags(),
            # The fetch is its transaction's only statement: its commit need not
            # wait for the WAL flush (a fetch lost in a crash: the jobs run again).
            "async_commit": self.options.fetch_async_commit,
        }

        async def fetch() -> list[Job]:
            async with self._source.connection() as conn:
                cur = _json.job_cursor(conn)
                await cur.execute(q.GET_JOBS, params)
                return await cur.fetchall()

        stats = self._stats
        if stats is None:
            return await retry_transient(fetch, "get_jobs")
        try:
            jobs = await retry_transient(fetch, "get_jobs")
        except Exception:
            stats.fetch_errors += 1
            raise
        stats.fetched(len(jobs))
        return jobs

    async def _next_start(self, took_jobs: bool) -> float | None:
        """Seconds until a rate window holding back work reopens (None: nothing to
        wait for).  With turns, only the worker holding the turn and a worker whose
        short fetch took jobs ask (the last to take jobs of a window sees it full):
        a reopening costs a fetch or two, not one per idle worker."""
        if self._turns is not None and not self._turns.holding and not took_jobs:
            return None
        return await self._rate_wake.delay()

    async def _forbidden_flags(self) -> list[str] | None:
        value: Any = self._forbidden
        if callable(value):
            value = value()
            if inspect.isawaitable(value):
                value = await value
        return list(value) if value else None

    async def _return_jobs(self, jobs: list[Job]) -> None:
        await return_jobs(self._source, self.worker_id, self._emit, jobs)

    def _on_report_error(self, error: BaseException, job_ids: list[int]) -> None:
        if self._stats is not None:
            self._stats.report_errors += 1
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

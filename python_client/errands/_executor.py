"""Running jobs: one asyncio task per job in a slot, its timeout, its outcome.

Async tasks run on the event loop, sync tasks in a pool of daemon threads.  A job's
slot is freed when its task ends; for a job of a named queue only once its outcome
is in the database (that frees the queue), while a job without a queue frees its
slot at once and leaves the completion to the :class:`Reporter` (its batch).

Forced shutdown (:meth:`Executor.abort_running`): set the abort signal, give tasks
:data:`ABORT_GRACE` seconds to stop by themselves (their own outcome is then
recorded), then cancel async tasks, abandon sync ones and fail every job still
running with ``WorkerShutdown: worker shutdown`` (it will be retried).

Cancellation (:meth:`Executor.cancel`, a request heard from ``errands:cancel``):
the job's own abort signal is set and an async task is cancelled; whatever the
task then does, its outcome is reported as ``worker_cancel_jobs`` (SQL would end
a requested job cancelled whatever was reported; this says so in the events).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from errands._connections import ConnectionSource, SyncConnections
from errands._local_queue import LocalQueue
from errands._record import Recorder
from errands._reporter import Reporter
from errands._task_results import (
    COMPLETED,
    TaskTimeout,
    WorkerShutdown,
    batch_outcome,
    encode_result,
)
from errands._threads import DaemonThreadPool
from errands.helpers import AbortSignal, Helpers
from errands.job import Job
from errands.tasks import TaskInfo, TaskRegistry

if TYPE_CHECKING:
    from errands._observe import Observer

logger = logging.getLogger("errands.worker")

ABORT_GRACE = 0.5
"""Seconds between setting the abort signal and cancelling/failing running jobs."""

EARLY_CANCEL_TTL = 120.0
"""Seconds a cancellation request for a job not started yet is remembered (a
locked job starts or is handed back well within that)."""
EARLY_CANCELS_KEPT = 100
"""How many such requests are kept before the old ones are forgotten."""

Emit = Callable[..., None]


class _Running:
    """A job in a slot (one per job: a plain class with slots, cheaper to make than a
    dataclass)."""

    __slots__ = ("abort", "cancelled", "inner", "job", "settled", "started", "sync", "task")

    def __init__(self, job: Job, abort: AbortSignal) -> None:
        self.job = job
        self.abort = abort
        """This job's abort signal: set by a cancellation request or at shutdown."""
        self.cancelled = False
        """Its cancellation was requested (committed: notifications follow commits)."""
        self.sync: bool | None = None
        """Whether its task is sync; None until the task starts."""
        self.started = time.perf_counter()
        self.task: asyncio.Task[None] | None = None
        self.inner: asyncio.Future[Any] | None = None
        self.settled = False
        """The outcome has been decided (by the job itself or by a forced shutdown)."""


class Executor:
    """The worker's slots: runs jobs and reports their outcomes.  ``on_release``
    is called when a slot frees (with whether the job's named queue is free again),
    ``on_written`` when the completion of a job whose slot was freed early has
    been written (with whether it ran in a named queue, which that write freed;
    ``completions_writing`` counts those not written yet)."""

    def __init__(
        self,
        tasks: TaskRegistry,
        reporter: Reporter,
        queue: LocalQueue,
        *,
        source: ConnectionSource,
        sync_connections: SyncConnections,
        worker_id: str,
        concurrency: int,
        emit: Emit,
        on_release: Callable[[bool], None] = lambda _named: None,
    ) -> None:
        self._tasks = tasks
        self._reporter = reporter
        self._queue = queue
        self._source = source
        self._sync = sync_connections
        self._worker_id = worker_id
        self._emit = emit
        self.on_release = on_release
        self.on_written: Callable[[bool], None] = lambda _named: None
        self.completions_writing = 0
        self.abort = AbortSignal()
        self.threads = DaemonThreadPool(concurrency)
        self.running: dict[int, _Running] = {}
        # Cancellation requests for jobs locked but not started yet (in the local
        # queue, or in a fetch in flight): job id -> when heard. They end cancelled
        # without running when they reach a slot.
        self._cancel_early: dict[int, float] = {}
        # Tasks whose slot is free but whose outcome (or hand-back) is still being written.
        self._writing: set[asyncio.Task[None]] = set()
        self._recorder = Recorder(reporter, emit)
        self._context = contextvars.copy_context()
        self.record = self._recorder.record

    @property
    def observer(self) -> Observer | None:
        """Counts (metrics) and spans (tracing) of the tries; None: neither."""
        return self._recorder.observer

    @observer.setter
    def observer(self, observer: Observer | None) -> None:
        self._recorder.observer = observer

    @property
    def jobs(self) -> list[Job]:
        return [rec.job for rec in self.running.values()]

    def track(self, task: asyncio.Task[None]) -> None:
        """Await ``task`` (a database write) in :meth:`wait_writes`."""
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def wait_writes(self) -> None:
        await asyncio.gather(*self._writing, return_exceptions=True)

    def start(self, job: Job) -> None:
        rec = _Running(job, AbortSignal())
        if self.abort.is_set():
            rec.abort.set()
        # Requested while it waited in the local queue: it never runs.
        if self._cancel_early and self._cancel_early.pop(job.id, None) is not None:
            rec.cancelled = True
        self.running[job.id] = rec
        # Unnamed: formatting a name per job costs more than the job.
        run = self._run_job(rec, self._tasks.get(job.task_identifier))
        observer = self._recorder.observer
        if observer is not None and observer.spans is not None:
            run = observer.spans.run(job, run)
        # In a copy of the worker's own context, not of the current one: a slot
        # freed by a job that just ended starts the next job from within the
        # ended job's context, which would leak its context variables onward.
        task = self._context.run(_start_task, run)
        rec.task = task
        if job.id not in self.running and not task.done():
            # Its first step (eager start) already freed the slot: the task goes
            # on to write the outcome.
            self.track(task)

    # --- one job -------------------------------------------------------------------------

    async def _run_job(self, rec: _Running, info: TaskInfo | None) -> None:
        job = rec.job
        try:
            # Requested before this task's first step (cancel() leaves a task
            # whose rec.sync is None alone): it never runs.
            if self._cancelled_early(rec):
                return
            self._emit("job:start", job=job)
            rec.started = time.perf_counter()
            error: BaseException | None = None
            replacement: list[Any] | None = None
            encoded: str | None = None  # the task's result as JSON text
            try:
                if info is None:
                    raise LookupError(f"unsupported task {job.task_identifier!r}")
                rec.sync = not info.is_async
                helpers = Helpers(
                    job, source=self._source, sync_connections=self._sync, abort=rec.abort,
                    worker_id=self._worker_id,
                )  # fmt: skip
                limit = job.timeout if job.timeout is not None else info.timeout
                if info.is_async and limit is None:
                    # Awaited in this task: a forced shutdown cancels the task itself.
                    result = await info.fn(job.payload, helpers)
                else:
                    if info.is_async:
                        rec.inner = asyncio.ensure_future(info.fn(job.payload, helpers))
                    else:
                        rec.inner = self.threads.run(info.fn, job.payload, helpers)
                    # wait(), not await: cancelling this task must not cancel the inner
                    # future (the outcome is then decided by abort_running).
                    done, _ = await asyncio.wait({rec.inner}, timeout=limit)
                    if not done:
                        await _give_up(rec.inner)
                        if not info.is_async:
                            self.threads.add_thread()  # the abandoned thread is still busy
                        raise TaskTimeout(f"task exceeded its {limit} s timeout")
                    result = rec.inner.result()
                if result is not None and inspect.isawaitable(result):
                    result = await result
                if isinstance(job.payload, list) and isinstance(result, (list, tuple)):
                    error, replacement, result = await batch_outcome(job.payload, result)
                if error is None and result is not None:
                    encoded = encode_result(result)
            except asyncio.CancelledError as exc:
                if rec.settled:
                    return
                if rec.cancelled:
                    # Our own cancel(): this task goes on to report the outcome.
                    current = asyncio.current_task()
                    if current is not None and hasattr(current, "uncancel"):
                        current.uncancel()
                error = exc
            except Exception as exc:
                error = exc
            if rec.settled:
                return
            rec.settled = True
            duration = time.perf_counter() - rec.started
            self._queue.record_duration(duration)
            if not rec.cancelled:
                # Free the slot now: the reporter owns the outcome (the job stays
                # locked until its batch is written), so the next job overlaps
                # the flush. A named queue stays locked until the outcome is
                # written: its next job is fetched when that write is done
                # (on_written), not now. (Holding the slot instead capped a
                # worker of serial queues at one flush per `concurrency` jobs.)
                if error is None:
                    self._release(rec, writing=False, queue_freed=False)
                    observer = self._recorder.observer
                    if observer is not None:
                        observer.ended(job, COMPLETED, duration, rec.started)
                    self._emit("job:success", job=job, duration=duration)
                    self.completions_writing += 1
                    self._reporter.complete_then(
                        job.id, functools.partial(self._completed, job, duration), encoded
                    )
                    return
                if job.queue_name is None:
                    # A failure of a queued job keeps its slot until written.
                    self._release(rec)
            await self.record(job, error, replacement, duration, encoded, cancelled=rec.cancelled)
        finally:
            self._release(rec)

    def cancel(self, job_id: int) -> bool:
        """A cancellation request for ``job_id``: set its abort signal and cancel it
        if it is an async task (a sync task is expected to watch ``helpers.abort``).
        Returns whether the job runs here and was not already cancelled or ending."""
        rec = self.running.get(job_id)
        if rec is None:
            now = time.monotonic()
            if len(self._cancel_early) >= EARLY_CANCELS_KEPT:
                # Requests for jobs that ended before they were heard: forget old ones.
                self._cancel_early = {
                    j: t for j, t in self._cancel_early.items() if now - t < EARLY_CANCEL_TTL
                }
            self._cancel_early[job_id] = now
            return False
        if rec.settled or rec.cancelled:
            return False
        rec.cancelled = True
        rec.abort.set()
        self._emit("job:cancel_requested", job=rec.job)
        if rec.sync is False:
            if rec.inner is not None:
                rec.inner.cancel()
            elif rec.task is not None:
                rec.task.cancel()
        return True

    def _cancelled_early(self, rec: _Running) -> bool:
        """Whether ``rec`` was cancelled before it started; if so, report it."""
        if not rec.cancelled:
            return False
        rec.settled = True
        self._release(rec)
        self.track(asyncio.ensure_future(self.record(rec.job, None, None, 0.0, cancelled=True)))
        return True

    def _release(self, rec: _Running, *, writing: bool = True, queue_freed: bool = True) -> None:
        """Free ``rec``'s slot; ``writing``: its task goes on to write the outcome;
        ``queue_freed``: its named queue (if any) is free again."""
        if self.running.pop(rec.job.id, None) is None:
            return
        if writing and rec.task is not None and not rec.task.done():
            self.track(rec.task)
        self.on_release(queue_freed and rec.job.queue_name is not None)

    def _completed(self, job: Job, duration: float, written: bool | None) -> None:
        """The reporter wrote (or gave up on) the completion of a job without a queue."""
        self.completions_writing -= 1
        self.on_written(job.queue_name is not None)
        if written is None:
            return  # logged by the reporter
        if not written:
            self._emit("job:lock_lost", job=job)
        self._emit("job:complete", job=job, duration=duration)

    # --- shutdown ------------------------------------------------------------------------

    async def wait_running(self, timeout: float, forced: Awaitable[Any]) -> None:
        """Wait until no job runs, ``timeout`` seconds pass or ``forced`` is done."""
        deadline = time.monotonic() + timeout
        force = asyncio.ensure_future(forced)
        try:
            while self.running and not force.done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                tasks = {rec.task for rec in self.running.values() if rec.task is not None}
                await asyncio.wait(
                    {*tasks, force}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            force.cancel()
            await asyncio.gather(force, return_exceptions=True)

    async def abort_running(self) -> None:
        """Abort the running jobs and fail those that do not stop by themselves."""
        self.abort.set()
        for rec in list(self.running.values()):
            rec.abort.set()
        # A moment for tasks that watch the abort signal to wind down by themselves.
        tasks = {rec.task for rec in self.running.values() if rec.task is not None}
        await asyncio.wait(tasks, timeout=ABORT_GRACE)
        records = [rec for rec in self.running.values() if not rec.settled]
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
                self.record(rec.job, WorkerShutdown("worker shutdown"), None, now - rec.started)
                for rec in records
            )
        )
        tasks = {rec.task for rec in self.running.values() if rec.task is not None}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5.0)
            for task in pending:
                logger.warning("errands: %s did not stop when cancelled", task.get_name())
                task.cancel()


if sys.version_info >= (3, 12):

    def _start_task(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A job's task, started eagerly: its first step runs now, as the task
        itself (current_task() is this task), so a job that never suspends ends
        here without being scheduled (~20 % of the worker's CPU per no-op job)."""
        return asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)

else:
    _start_task = asyncio.create_task  # eager start came with Python 3.12


async def _give_up(inner: asyncio.Future[Any]) -> None:
    """A timed-out try: cancel an async task (a moment to clean up); a sync task's
    thread cannot be stopped: its result is abandoned and it finishes on its own."""
    inner.cancel()
    await asyncio.wait({inner}, timeout=ABORT_GRACE)
    if inner.done() and not inner.cancelled():
        inner.exception()  # retrieved: no "exception was never retrieved" warning

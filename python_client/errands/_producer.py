"""The worker's fetch loop: wait for a reason to fetch, fetch up to the free
capacity into the local queue, dispatch the queued jobs into free slots.

One ``get_jobs`` call (``fetch``) asks for as many jobs as there are free slots
plus what the local queue wants to hold ahead (:meth:`LocalQueue.fetch_size`).
The loop fetches again at once when that call filled every free slot, when it
was nudged (a notification, a rescue, a reconnect) or when a job of a named queue
finished (its queue is free again); otherwise a continuous worker waits for
``poll_interval`` (jobs becoming due, retries).  One fetch runs at a time, in its
own task, so that the loop can meanwhile hand back buffered jobs that expired.
A failed fetch is retried after a backoff (connection lost) or ``poll_interval``.
A fetch that came back short may have been held back by a rate limit: with
``next_start`` (:mod:`errands._rate_wake`) the loop then asks when the earliest
exhausted rate window reopens and fetches at that moment if it comes before the
next poll.

Run-once mode (``continuous=False``): fetch until a fetch finds nothing while no
job is running and no completion is being written (writing one can make a job
that waited for it runnable: fetch again once it is written), then return; a
failed fetch ends the loop with its error.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Sized
from typing import Any

from errands._local_queue import LocalQueue
from errands._retry import Backoff, Outage, is_connection_error
from errands.job import Job

Emit = Callable[..., None]

DISPATCH_ROUNDS = 16
"""Rounds of starting jobs (up to ``concurrency`` each) one dispatch may run while
jobs end as they start, before it yields to the event loop."""

RECHECK = 0.05
"""Seconds after a short fetch to look again (once) when a rate-limited queue has
room and jobs due (``next_start`` answered 0: now)."""


class Producer:
    """Feeds the slots of a worker from the database through its local queue.

    ``running`` is the collection of busy slots (its length is read); ``start``
    puts a job into a free slot; ``hand_back`` returns fetched jobs unstarted;
    ``may_start`` (if given) says whether jobs may be started now; ``track``
    is given the tasks handing back stale jobs (for the shutdown to await);
    ``next_start`` (if given) says, after a short fetch (its argument: whether
    a fetch took jobs since the last short one), in how many seconds a rate
    window holding work back reopens (None or infinity: nothing to wait for)."""

    def __init__(
        self,
        queue: LocalQueue,
        running: Sized,
        *,
        concurrency: int,
        continuous: bool,
        poll_interval: float,
        fetch: Callable[[int], Awaitable[list[Job]]],
        start: Callable[[Job], None],
        hand_back: Callable[[list[Job]], Coroutine[Any, Any, None]],
        may_start: Callable[[], bool] | None = None,
        track: Callable[[asyncio.Task[None]], None] = lambda _task: None,
        emit: Emit = lambda *_args, **_kwargs: None,
        outage: Outage | None = None,
        room: asyncio.Event | None = None,
        completions_writing: Callable[[], int] = lambda: 0,
        next_start: Callable[[bool], Awaitable[float | None]] | None = None,
    ) -> None:
        self.queue = queue
        self._next_start = next_start
        self._asking = False  # a next_start call is in flight
        self._ask: bool | None = None  # a short fetch to ask about (took jobs before it)
        self._took = False  # a fetch took jobs since the last short one
        self._rechecked = False  # looked again (RECHECK) since a fetch took jobs
        self._completions_writing = completions_writing
        self.running = running
        self.concurrency = concurrency
        self.continuous = continuous
        self.poll_interval = poll_interval
        self._fetch = fetch
        self._start = start
        self._hand_back = hand_back
        self._may_start = may_start
        self._track = track
        self._emit = emit
        self._outage = outage if outage is not None else Outage("worker")
        self._backoff = Backoff()
        self.room = room if room is not None else asyncio.Event()
        """Set whenever the worker may have room for more jobs (:meth:`has_room`)."""
        self.stopping = False
        self.want_fetch = True
        """Fetch at the next turn whatever the poll deadline says."""
        self.wakeup = asyncio.Event()
        self._looping = False  # run() is running (nudge() may start a fetch)
        self._dispatching = False  # dispatch() is on the stack
        self._dispatch_again = False  # a slot freed meanwhile: dispatch another round
        self.fetching: asyncio.Task[None] | None = None
        self._error: Exception | None = None  # of the last fetch, for the loop
        self._next_poll = 0.0
        self._retry_at = 0.0  # after a failed fetch: no fetch before this (backoff)

    # --- what the rest of the worker calls ---------------------------------------------

    def nudge(self) -> None:
        """Fetch now (a notification, a rescue, a reconnect).  An idle producer
        starts the fetch here rather than on its loop's next turn: a notified
        job's add -> start latency is the path this serves."""
        self.want_fetch = True
        if self._looping and self.fetching is None and self._error is None and not self.stopping:
            now = time.monotonic()
            if now >= self._retry_at:
                self._start_fetch(now)
        self.wakeup.set()

    def has_room(self) -> bool:
        """Whether a job fetched now would start at once (a slot is free).  Not the
        local queue's prefetch: a job notified while every slot is busy is better
        fetched by an idle worker (:mod:`errands._turns`)."""
        return not self.stopping and not self.queue and len(self.running) < self.concurrency

    def completion_written(self, named_queue: bool) -> None:
        """A completion was written: run-once fetches again (it may have released
        a job that waited for it); ``named_queue``: the job's queue is free again,
        so that queue's next job may be fetched now."""
        # Through the loop, not nudge(): completions are written in a stream, and
        # the loop's turn lets their wishes to fetch share one fetch.
        if named_queue or not self.continuous:
            self.want_fetch = True
            self.wakeup.set()

    def stop(self) -> None:
        """Stop fetching and starting jobs; :meth:`run` returns."""
        self.stopping = True
        self.wakeup.set()

    def dispatch(self) -> None:
        """Start queued jobs in the free slots (stale ones are handed back).

        A job may end within ``start`` (its task's first step runs eagerly and
        never suspends): its freed slot calls back here. That call only asks for
        another round of this one, so the stack stays flat; after
        :data:`DISPATCH_ROUNDS` rounds the loop's next turn goes on, so that
        other callbacks (notifications, fetch results) get their turn."""
        if self._dispatching:
            self._dispatch_again = True
            return
        self._dispatching = True
        try:
            for _ in range(DISPATCH_ROUNDS):
                self._dispatch_again = False
                self._dispatch_round()
                if not self._dispatch_again:
                    return
            self.wakeup.set()
        finally:
            self._dispatching = False

    def _dispatch_round(self) -> None:
        queue = self.queue
        free = self.concurrency - len(self.running)
        may_start = self._may_start
        if queue and free > 0 and not self.stopping and (may_start is None or may_start()):
            ready, stale = queue.take(free)
            for job in ready:
                self._start(job)
            if stale:
                self._track(asyncio.create_task(self._hand_back(stale)))

    def slot_freed(self, named_queue: bool) -> None:
        """A job left its slot (``named_queue``: it ran in a named queue, which is
        free again, so that queue's next job may be fetched now)."""
        queue = self.queue
        queue.hold_prefetch = False
        self.room.set()
        if named_queue:
            self.want_fetch = True
        if queue and not self.stopping:
            self.dispatch()  # the next queued job takes the slot at once
        elif not self.continuous:
            self.want_fetch = True  # run-once: fetch until a fetch finds nothing
        # Wake the loop only when there is something for it to decide.
        if (
            self.want_fetch
            or self.stopping
            or (self.fetching is None and queue.fetch_size(len(self.running)) > 0)
        ):
            self.wakeup.set()

    async def finish(self) -> None:
        """After :meth:`stop`: wait for the fetch in flight (it hands its jobs back)
        and hand back the queued jobs."""
        if self.fetching is not None:
            await asyncio.gather(self.fetching, return_exceptions=True)
        await self._hand_back(self.queue.drain())

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Until :meth:`stop` (or, run-once, until there is nothing left to run)."""
        self._looping = True
        try:
            await self._loop()
        finally:
            self._looping = False

    async def _loop(self) -> None:
        while not self.stopping:
            self.wakeup.clear()
            self.dispatch()
            self.room.set()
            now = time.monotonic()
            self._take_fetch_error(now)
            if self.fetching is None and now >= self._retry_at:
                if self._start_fetch(now):
                    continue
                if (
                    not self.continuous
                    and not self.running
                    and not self.queue
                    and not self._completions_writing()
                ):
                    return  # run-once: the last fetch found nothing, nothing runs or is written
            if self._queue_expired(now):
                await self._hand_back(self.queue.drain())
                continue
            await self._sleep(self._deadline(), now)

    def _start_fetch(self, now: float) -> bool:
        """Start a fetch (none is in flight) if one is wanted or the poll is due and
        there is room for jobs; returns whether it started."""
        size = self.queue.fetch_size(len(self.running))
        if size > 0 and (self.want_fetch or (self.continuous and now >= self._next_poll)):
            self.want_fetch = False
            self._next_poll = now + self.poll_interval
            self.fetching = asyncio.create_task(self._fetch_into_queue(size))
            return True
        return False

    def _take_fetch_error(self, now: float) -> None:
        """The last fetch failed: raise it (run-once) or schedule the retry."""
        if self._error is None:
            return
        error, self._error = self._error, None
        if not self.continuous:
            raise error
        self._emit("worker:fetch:error", error=error)
        self._outage.failed("fetch", error, "fetching jobs")
        # Connection lost: back off (a LISTEN reconnect nudges a fetch).
        delay = self._backoff.next_delay() if is_connection_error(error) else self.poll_interval
        self._retry_at = self._next_poll = now + delay

    def _queue_expired(self, now: float) -> bool:
        """Every slot is busy and the queued jobs waited too long to start."""
        return (
            bool(self.queue)
            and len(self.running) >= self.concurrency
            and now >= self.queue.expires_at()
        )

    def _deadline(self) -> float | None:
        """When the loop must look again without being woken (None: never)."""
        deadline: float | None = None
        if (
            self.continuous
            and self.fetching is None
            and self.queue.fetch_size(len(self.running)) > 0
        ):
            deadline = max(self._next_poll, self._retry_at)
        if self.queue and len(self.running) >= self.concurrency:
            expires = self.queue.expires_at()
            deadline = expires if deadline is None else min(deadline, expires)
        return deadline

    async def _sleep(self, deadline: float | None, now: float) -> None:
        if deadline is None:
            await self.wakeup.wait()
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.wakeup.wait(), max(0.0, deadline - now))

    async def _fetch_into_queue(self, count: int) -> None:
        started = time.monotonic()
        try:
            jobs = await self._fetch(count)
            self._backoff.reset()
            self._outage.recovered("fetch")
        except Exception as exc:
            self._error = exc
            jobs = []
        finally:
            self.fetching = None
            self.wakeup.set()
        if self.stopping:
            await self._hand_back(jobs)
            return
        if jobs:
            self.queue.add(jobs, started)
            self.dispatch()
            self._took = True
            self._rechecked = False
        if len(jobs) >= count:
            self.want_fetch = True  # there may be more
        elif self.continuous and self._next_start is not None and self._error is None:
            took, self._took = self._took, False
            self._ask = took or bool(self._ask)
            if not self._asking:  # else the call in flight asks again (its answer is old)
                self._asking = True
                self._track(asyncio.create_task(self._ask_until_answered()))

    async def _ask_until_answered(self) -> None:
        try:
            while self._ask is not None and not self.stopping:
                took, self._ask = self._ask, None
                await self._fetch_when_rate_room(took)
        finally:
            self._asking = False

    async def _fetch_when_rate_room(self, took_jobs: bool) -> None:
        """After a short fetch: move the next poll to when a rate window reopens."""
        try:
            assert self._next_start is not None
            delay = await self._next_start(took_jobs)
        except Exception:
            return  # the next poll finds the work anyway
        if delay is None or math.isinf(delay) or self.stopping:
            return
        if delay == 0:
            # Room now: this fetch lost a race for a queue's row (SKIP LOCKED).
            # Look once more, shortly; not again before a fetch takes jobs (the
            # room may hold jobs this worker does not run).
            if self._rechecked:
                return
            self._rechecked = True
            delay = RECHECK
        at = time.monotonic() + delay
        if at < self._next_poll:
            self._next_poll = at
            self.wakeup.set()

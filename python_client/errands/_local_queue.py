"""The worker's local queue: jobs fetched (locked by the worker, their attempt
counted) but not started yet.

Fetching one job per free slot costs a round trip per job; a worker whose jobs are
fast fetches ahead instead, about :data:`PREFETCH_WINDOW` seconds of work at the
recent task durations (at most ``size`` jobs).  A buffered job that cannot start
within ``ttl`` seconds (every slot stays busy) is never started but handed back:
by then the worker may have been cut off long enough to be declared dead and its
jobs given to others.  After such a hand-back the queue fetches only for free
slots until a slot frees, or it would fetch the same jobs again and again.

Pure bookkeeping: no database, no event loop (the worker hands jobs back).
"""

from __future__ import annotations

import time
from collections import deque

from errands.job import Job

PREFETCH_WINDOW = 0.1
"""Seconds of work (at the recent task durations) the local queue aims to hold."""
LOCAL_QUEUE_TTL = 5.0
"""Buffered jobs not started for this many seconds (every slot busy) are handed back."""


class LocalQueue:
    """Fetched jobs waiting for a slot, and how many more to fetch."""

    __slots__ = ("_jobs", "avg_duration", "concurrency", "hold_prefetch", "last_dispatch",
                 "size", "ttl")  # fmt: skip

    def __init__(self, concurrency: int, size: int, ttl_limit: float = LOCAL_QUEUE_TTL) -> None:
        self.concurrency = concurrency
        self.size = size
        self.ttl = min(LOCAL_QUEUE_TTL, ttl_limit)
        """Seconds a job may wait here: :data:`LOCAL_QUEUE_TTL`, or less when the
        worker may be declared dead sooner (``ttl_limit``)."""
        self._jobs: deque[tuple[Job, float]] = deque()  # (job, monotonic fetch start)
        self.last_dispatch = 0.0
        """When jobs last left the queue for slots (or it last became non-empty)."""
        self.avg_duration: float | None = None
        """Moving average of task durations (seconds); None before the first job."""
        self.hold_prefetch = False
        """Jobs expired unstarted: fetch only for free slots until a slot frees."""

    def __len__(self) -> int:
        return len(self._jobs)

    def __bool__(self) -> bool:
        return bool(self._jobs)

    def add(self, jobs: list[Job], fetched_at: float) -> None:
        """Buffer ``jobs`` of a fetch that started at ``fetched_at`` (monotonic)."""
        if not self._jobs:
            self.last_dispatch = time.monotonic()
        self._jobs.extend([(job, fetched_at) for job in jobs])

    def take(self, free: int) -> tuple[list[Job], list[Job]]:
        """Up to ``free`` jobs to start now, and the stale ones met on the way
        (older than ``ttl``: to hand back, never to start)."""
        jobs = self._jobs
        now = self.last_dispatch = time.monotonic()
        ready: list[Job] = []
        stale: list[Job] = []
        while jobs and len(ready) < free:
            job, fetched = jobs.popleft()
            if now - fetched > self.ttl:
                stale.append(job)
            else:
                ready.append(job)
        if stale:
            self.hold_prefetch = True
        return ready, stale

    def expires_at(self) -> float:
        """When, with every slot busy, the buffered jobs are due to be handed back."""
        return self.last_dispatch + self.ttl

    def drain(self) -> list[Job]:
        """Empty the queue (for a hand-back); holds prefetching until a slot frees."""
        jobs = [job for job, _ in self._jobs]
        self._jobs.clear()
        self.hold_prefetch = True
        return jobs

    def record_duration(self, duration: float) -> None:
        avg = self.avg_duration
        self.avg_duration = duration if avg is None else avg + 0.1 * (duration - avg)

    def fetch_size(self, running: int) -> int:
        """How many jobs the next fetch asks for, with ``running`` slots busy: the
        free slots plus enough to keep about :data:`PREFETCH_WINDOW` seconds of work
        buffered (at most ``size``).  The buffer is topped up as soon as a quarter
        of it (at least ``concurrency`` jobs) is missing, so a fetch is nearly always
        in flight while the worker is busy, yet each one stays large."""
        target = 0
        if self.size and self.avg_duration is not None and not self.hold_prefetch:
            per_job = max(self.avg_duration, 1e-6)
            target = min(self.size, int(self.concurrency * PREFETCH_WINDOW / per_job))
        if self._jobs:  # then every slot is busy (jobs start as soon as a slot frees)
            missing = target - len(self._jobs)
            return missing if missing >= max(self.concurrency, target // 4) else 0
        return self.concurrency - running + target

"""What a worker counts for its Prometheus endpoint (``metrics_port``), in plain
Python: the collector of :mod:`errands.metrics` reads it at scrape time.

The hot path (:meth:`WorkerStats.job`) is one tuple appended to a deque; the
tuples are folded into per-task counters and histogram buckets every
:data:`FOLD_AT` jobs (on the event loop) or at a scrape (in the HTTP server's
thread): a ``prometheus_client`` ``.labels(...).observe()`` per job costs several
microseconds, this about a quarter of one.  ``deque.append`` and ``popleft`` are
atomic, so the two threads never lose a tuple; the fold itself holds a lock.

Imported only when metrics are enabled; it imports nothing beyond the standard
library (``prometheus_client`` is :mod:`errands.metrics`' business).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from errands._task_results import OUTCOMES

__all__ = ["OUTCOMES", "Histogram", "Snapshot", "WorkerStats"]

RUN_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
               60.0, 300.0)  # fmt: skip
"""Upper bounds (seconds) of ``errands_job_run_duration_seconds`` (then +Inf)."""
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                300.0, 900.0, 3600.0)  # fmt: skip
"""Upper bounds (seconds) of ``errands_job_queue_wait_seconds`` (then +Inf)."""
FETCH_BUCKETS = (0.0, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
"""Upper bounds (jobs) of ``errands_fetch_batch_size`` (then +Inf)."""

FOLD_AT = 2048
"""Jobs logged before the event loop folds them (bounds the deque's memory)."""


class Histogram:
    """Bucket counts (not cumulative; the last one is +Inf) and the sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def freeze(self) -> HistogramValues:
        """Cumulative ``(le, count)`` pairs and the sum."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return out, self.total


class WorkerStats:
    """One worker's counters, histograms and gauges (see the module doc)."""

    def __init__(self, tasks: Iterable[str] = ()) -> None:
        self._log: deque[tuple[str, datetime, int, float, float]] = deque()
        self._lock = threading.Lock()
        # Wall clock = perf_counter + offset (one time.time() per fold, not per job).
        self._offset = time.time() - time.perf_counter()
        self.outcomes: dict[tuple[str, int], int] = {}
        for task in tasks:  # every series exists from the start: rate() sees the first job
            for outcome in range(len(OUTCOMES)):
                self.outcomes[(task, outcome)] = 0
        self.run: dict[str, Histogram] = {}
        self.wait: dict[str, Histogram] = {}
        self.fetches = Histogram(FETCH_BUCKETS)
        self.fetch_errors = 0
        self.report_errors = 0
        self.running: Callable[[], int] = lambda: 0
        self.buffered: Callable[[], int] = lambda: 0

    def job(self, task: str, run_at: datetime, outcome: int, duration: float,
            started: float) -> None:  # fmt: skip
        """A try ended: ``started`` is its ``time.perf_counter()`` at start."""
        log = self._log
        log.append((task, run_at, outcome, duration, started))
        if len(log) >= FOLD_AT:
            self.fold()

    def fetched(self, count: int) -> None:
        with self._lock:  # once per fetch; a scrape reads the buckets in its thread
            self.fetches.observe(count)

    def fold(self) -> None:
        """Move the logged tries into the counters and histograms."""
        log = self._log
        with self._lock:
            self._offset = offset = time.time() - time.perf_counter()
            outcomes, run, wait = self.outcomes, self.run, self.wait
            while True:
                try:
                    task, run_at, outcome, duration, started = log.popleft()
                except IndexError:
                    break
                key = (task, outcome)
                outcomes[key] = outcomes.get(key, 0) + 1
                hist = run.get(task)
                if hist is None:
                    hist = run[task] = Histogram(RUN_BUCKETS)
                    wait[task] = Histogram(WAIT_BUCKETS)
                hist.observe(duration)
                # A clock ahead of the database's would give negative waits.
                wait[task].observe(max(0.0, started + offset - run_at.timestamp()))

    def snapshot(self) -> Snapshot:
        """A consistent copy for a scrape (folds first)."""
        self.fold()
        with self._lock:
            return Snapshot(
                outcomes=dict(self.outcomes),
                run={task: hist.freeze() for task, hist in self.run.items()},
                wait={task: hist.freeze() for task, hist in self.wait.items()},
                fetches=self.fetches.freeze(),
                fetch_errors=self.fetch_errors,
                report_errors=self.report_errors,
                running=self.running(),
                buffered=self.buffered(),
            )


HistogramValues: TypeAlias = "tuple[list[tuple[str, int]], float]"
"""Cumulative ``(le, count)`` pairs as Prometheus exposes them, and the sum."""


@dataclass(frozen=True)
class Snapshot:
    """The values of one scrape."""

    outcomes: dict[tuple[str, int], int]
    run: dict[str, HistogramValues]
    wait: dict[str, HistogramValues]
    fetches: HistogramValues
    fetch_errors: int
    report_errors: int
    running: int
    buffered: int

"""What a worker counts for its Prometheus endpoint (``metrics_port``), in plain
Python: the collector of :mod:`errands.metrics` reads it at scrape time.

The hot path (:meth:`WorkerStats.ended`, once per try) adds to a few list cells of
its task's :class:`TaskStats` (outcome counter, two histogram buckets found by
``bisect``): no lock, no allocation, no ``prometheus_client`` (whose
``.labels(...).observe()`` costs several microseconds per call).  A scrape, in
the HTTP server's thread, copies the lists; under the GIL a copy never sees a
torn value, at worst a try counted in one list and not yet in the next.

Imported only when metrics are enabled; it imports nothing beyond the standard
library (``prometheus_client`` is :mod:`errands.metrics`' business).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeAlias

from errands._task_results import COMPLETED, OUTCOMES

if TYPE_CHECKING:
    from errands.job import Job

__all__ = ["OUTCOMES", "Snapshot", "TaskStats", "WorkerStats"]

RUN_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
               60.0, 300.0)  # fmt: skip
"""Upper bounds (seconds) of ``errands_job_run_duration_seconds`` (then +Inf)."""
_FIRST_RUN_BOUND = RUN_BUCKETS[0]

WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                300.0, 900.0, 3600.0)  # fmt: skip
"""Upper bounds (seconds) of ``errands_job_queue_wait_seconds`` (then +Inf)."""
FETCH_BUCKETS = (0.0, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
"""Upper bounds (jobs) of ``errands_fetch_batch_size`` (then +Inf)."""


class Histogram:
    """Bucket counts (not cumulative; the last one is +Inf) and the sum (the fetch
    sizes: one observation per fetch)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def freeze(self) -> HistogramValues:
        return _cumulative(self.bounds, list(self.counts), self.total)


def _cumulative(bounds: tuple[float, ...], counts: list[int], total: float) -> HistogramValues:
    """Cumulative ``(le, count)`` pairs, as Prometheus exposes them, and the sum."""
    out: list[tuple[str, int]] = []
    running = 0
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        running += count
        out.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
    return out, total


class TaskStats:
    """One task's counts: tries by outcome (but completed, derived at a scrape),
    and the buckets (not cumulative; the last one is +Inf) and sums of the
    run-duration and queue-wait histograms."""

    __slots__ = ("outcomes", "run", "run_sum", "wait", "wait_sum")

    def __init__(self) -> None:
        self.outcomes = [0] * len(OUTCOMES)
        self.run = [0] * (len(RUN_BUCKETS) + 1)
        self.run_sum = 0.0
        self.wait = [0] * (len(WAIT_BUCKETS) + 1)
        self.wait_sum = 0.0


class WorkerStats:
    """One worker's counters, histograms and gauges (see the module doc)."""

    def __init__(self, tasks: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        # Wall clock = perf_counter + offset: no time.time() per try; refreshed per fetch.
        self._offset = time.time() - time.perf_counter()
        # Every task's series exist from the start: rate() sees the first try.
        self.tasks: dict[str, TaskStats] = {task: TaskStats() for task in tasks}
        self.fetches = Histogram(FETCH_BUCKETS)
        self.fetch_errors = 0
        self.report_errors = 0
        self.running: Callable[[], int] = lambda: 0
        self.buffered: Callable[[], int] = lambda: 0
        self._run_at: datetime | None = None  # the last run_at seen, and its timestamp
        self._due = 0.0

    def ended(self, job: Job, outcome: int, duration: float, started: float,
              error: BaseException | None = None) -> None:  # fmt: skip
        """A try of ``job`` ended with ``outcome`` after ``duration`` seconds;
        ``started`` is its ``time.perf_counter()`` at start.  Every step counts
        here (a no-op job costs the worker ~30 us): see docs/metrics.md."""
        st = self.tasks.get(job.task_identifier)
        if st is None:
            st = self.tasks[job.task_identifier] = TaskStats()
        if outcome:  # completed (0) is not counted: tries (the run count) minus the rest
            st.outcomes[outcome] += 1
        # bisect_left: a value equal to a bound belongs to that bucket (le); a fast
        # job skips the call.
        if duration <= _FIRST_RUN_BOUND:
            st.run[0] += 1
        else:
            st.run[bisect_left(RUN_BUCKETS, duration)] += 1
        st.run_sum += duration
        # Jobs added together share their run_at: one timestamp() for a run of them.
        run_at = job.run_at
        if run_at == self._run_at:
            due = self._due
        else:
            due = self._due = run_at.timestamp()
            self._run_at = run_at
        wait = started + self._offset - due
        if wait < 0.0:  # a clock ahead of the database's
            wait = 0.0
        st.wait[bisect_left(WAIT_BUCKETS, wait)] += 1
        st.wait_sum += wait

    def fetched(self, count: int) -> None:
        self._offset = time.time() - time.perf_counter()
        with self._lock:  # once per fetch; a scrape reads the buckets in its thread
            self.fetches.observe(count)

    def snapshot(self) -> Snapshot:
        """A copy of the values for a scrape."""
        outcomes: dict[tuple[str, int], int] = {}
        run: dict[str, HistogramValues] = {}
        wait: dict[str, HistogramValues] = {}
        for task, st in list(self.tasks.items()):
            counts, buckets = list(st.outcomes), list(st.run)
            counts[COMPLETED] = max(0, sum(buckets) - sum(counts))  # see ended()
            for outcome, count in enumerate(counts):
                outcomes[(task, outcome)] = count
            run[task] = _cumulative(RUN_BUCKETS, buckets, st.run_sum)
            wait[task] = _cumulative(WAIT_BUCKETS, list(st.wait), st.wait_sum)
        with self._lock:
            fetches = self.fetches.freeze()
        return Snapshot(
            outcomes=outcomes, run=run, wait=wait, fetches=fetches,
            fetch_errors=self.fetch_errors, report_errors=self.report_errors,
            running=self.running(), buffered=self.buffered(),
        )  # fmt: skip


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

"""The worker's metrics as ``prometheus_client`` metric families (``errands[metrics]``).

Imported by :mod:`errands.metrics` at the first scrape only.  The values live in
a :class:`~errands._worker_stats.WorkerStats` the worker updates in plain Python;
:class:`WorkerCollector` turns them into metric families only when scraped, so a
worker pays nothing per job for ``prometheus_client``.  Every metric is listed in
docs/metrics.md.  Labels are task identifiers and outcomes only: never job ids or
payload values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from errands._worker_stats import OUTCOMES, WorkerStats

__all__ = ["WorkerCollector", "render"]


class WorkerCollector(Collector):
    """Reads a :class:`WorkerStats` at scrape time."""

    def __init__(self, stats: WorkerStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        snap = self._stats.snapshot()
        jobs = CounterMetricFamily(
            "errands_jobs", "Tries ended by this worker process, by task and outcome.",
            labels=["task", "outcome"],
        )  # fmt: skip
        for (task, outcome), count in sorted(snap.outcomes.items()):
            jobs.add_metric([task, OUTCOMES[outcome]], count)
        yield jobs
        run = HistogramMetricFamily(
            "errands_job_run_duration_seconds",
            "Seconds a try of a job ran (task start to outcome), by task.", labels=["task"],
        )  # fmt: skip
        for task, (buckets, total) in sorted(snap.run.items()):
            run.add_metric([task], buckets, total)
        yield run
        wait = HistogramMetricFamily(
            "errands_job_queue_wait_seconds",
            "Seconds from a job's run_at to the start of its try, by task.", labels=["task"],
        )  # fmt: skip
        for task, (buckets, total) in sorted(snap.wait.items()):
            wait.add_metric([task], buckets, total)
        yield wait
        fetches = HistogramMetricFamily(
            "errands_fetch_batch_size", "Jobs returned by each get_jobs call of this worker."
        )
        fetches.add_metric([], *snap.fetches)
        yield fetches
        yield GaugeMetricFamily(
            "errands_jobs_running", "Jobs running in this worker's slots now.", value=snap.running
        )
        yield GaugeMetricFamily(
            "errands_local_queue_jobs",
            "Jobs fetched (locked) by this worker and waiting for a free slot.",
            value=snap.buffered,
        )
        yield CounterMetricFamily(
            "errands_fetch_errors", "get_jobs calls that failed (after transient retries).",
            value=snap.fetch_errors,
        )  # fmt: skip
        yield CounterMetricFamily(
            "errands_report_errors",
            "Failed attempts to write a batch of job outcomes (each is retried).",
            value=snap.report_errors,
        )


def render(stats: WorkerStats) -> bytes:
    """``stats`` in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(stats))
    return generate_latest(registry)

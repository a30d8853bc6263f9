"""The worker's Prometheus endpoint (``errands[metrics]``: ``prometheus_client``).

``errands worker --metrics-port PORT`` (or ``WorkerOptions(metrics_port=...)``)
serves ``/metrics`` from a thread of the worker's process.  The values live in a
:class:`~errands._worker_stats.WorkerStats` the worker updates in plain Python;
:class:`WorkerCollector` turns them into metric families only when scraped, so
a worker pays nothing per job for ``prometheus_client``.  Every metric is listed
in docs/metrics.md.  Labels are task identifiers and outcomes only: never job
ids, payloads or queue names chosen per job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from errands._worker_stats import OUTCOMES, WorkerStats

logger = logging.getLogger("errands.worker")

__all__ = ["MetricsServer", "WorkerCollector", "serve"]


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


class MetricsServer:
    """The HTTP server of one worker's ``/metrics`` (stop it with :meth:`close`)."""

    def __init__(self, stats: WorkerStats, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(WorkerCollector(stats))
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.host = host
        self.port: int = self._server.server_address[1]
        logger.info("errands: metrics on http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


def serve(stats: WorkerStats, host: str, port: int) -> MetricsServer:
    """Serve ``stats`` at ``http://host:port/metrics`` (port 0: a free port)."""
    return MetricsServer(stats, host, port)

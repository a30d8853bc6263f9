"""The worker's metrics as ``prometheus_client`` metric families (``errands[metrics]``),
and the HTTP server that serves them.

Imported by :mod:`errands.metrics`' thread at the first connection only.  The values live in
a :class:`~errands._worker_stats.WorkerStats` the worker updates in plain Python;
:class:`WorkerCollector` turns them into metric families only when scraped, so a
worker pays nothing per job for ``prometheus_client``.  Every metric is listed in
docs/metrics.md.  Labels are task identifiers and outcomes only: never job ids or
payload values.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from errands._worker_stats import OUTCOMES, WorkerStats

__all__ = ["WorkerCollector", "http_server", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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


class _Handler(BaseHTTPRequestHandler):
    stats: WorkerStats

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404)
            return
        body = render(self.stats)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape on stderr is noise


def http_server(stats: WorkerStats, sock: socket.socket) -> ThreadingHTTPServer:
    """A threading HTTP server serving ``stats`` on ``sock`` (bound, listening)."""
    handler = type("Handler", (_Handler,), {"stats": stats})
    server = ThreadingHTTPServer(sock.getsockname()[:2], handler, bind_and_activate=False)
    server.socket.close()  # the one it made: ours is already bound
    server.socket = sock
    server.server_name, server.server_port = str(sock.getsockname()[0]), sock.getsockname()[1]
    server.daemon_threads = True
    return server

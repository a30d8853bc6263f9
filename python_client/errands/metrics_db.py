"""Database-wide gauges in the Prometheus text format (``errands[metrics]``).

:func:`render_database_metrics` reads ``errands.job_counts``,
``errands.oldest_ready_run_at`` and ``errands.worker_counts``
(sql/schema/65_metrics.sql: no full scan per call, however big the backlog) on
a connection you give it, and returns the body of a ``/metrics`` response; the
dashboard's ``/metrics`` is meant to serve it.  A role needs ``grant_read``.
Every metric is listed in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE",
    "DatabaseFigures",
    "render_database_metrics",
    "render_database_metrics_async",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

JOB_COUNTS = "SELECT task_identifier, queue_name, state, jobs, estimated FROM errands.job_counts()"
OLDEST = "SELECT extract(epoch FROM now() - errands.oldest_ready_run_at())::float8"
WORKERS = "SELECT state, workers FROM errands.worker_counts()"
WORKER_STATES = ("alive", "hung", "dead")


class DatabaseFigures(Collector):
    """The rows of the three queries as metric families."""

    def __init__(
        self,
        jobs: Sequence[Sequence[Any]],
        oldest_age: float | None,
        workers: Sequence[Sequence[Any]],
    ) -> None:
        self._jobs = jobs
        self._oldest = oldest_age
        self._workers = {str(state): int(n) for state, n in workers}

    def collect(self) -> Iterator[Any]:
        jobs = GaugeMetricFamily(
            "errands_db_jobs",
            "Unfinished jobs by task, queue ('' for none) and state (errands.jobs).",
            labels=["task", "queue", "state"],
        )
        estimated = False
        rows = sorted(self._jobs, key=lambda r: (r[0], r[1] or "", r[2]))
        for task, queue, state, count, est in rows:
            jobs.add_metric([task, queue or "", state], count)
            estimated = estimated or bool(est)
        yield jobs
        yield GaugeMetricFamily(
            "errands_db_jobs_estimated",
            "1 when errands_db_jobs is estimated from a sample (a big table), 0 when exact.",
            value=1 if estimated else 0,
        )
        yield GaugeMetricFamily(
            "errands_db_oldest_pending_job_age_seconds",
            "Seconds the longest-waiting job ready to run has waited since its run_at "
            "(0: none waits).",
            value=max(0.0, self._oldest or 0.0),
        )
        workers = GaugeMetricFamily(
            "errands_db_workers", "Registered workers by state.", labels=["state"]
        )
        for state in sorted({*WORKER_STATES, *self._workers}):
            workers.add_metric([state], self._workers.get(state, 0))
        yield workers

    def render(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry)


def render_database_metrics(conn: psycopg.Connection[Any]) -> bytes:
    """The database-wide gauges, as the body of a Prometheus ``/metrics`` response
    (:data:`CONTENT_TYPE`).  Runs three reads on ``conn`` (in its current
    transaction, if any: it commits nothing)."""
    with conn.cursor() as cur:
        jobs = cur.execute(JOB_COUNTS).fetchall()
        row = cur.execute(OLDEST).fetchone()
        workers = cur.execute(WORKERS).fetchall()
    return DatabaseFigures(jobs, row[0] if row else None, workers).render()


async def render_database_metrics_async(conn: psycopg.AsyncConnection[Any]) -> bytes:
    """:func:`render_database_metrics` on an async connection."""
    async with conn.cursor() as cur:
        jobs = await (await cur.execute(JOB_COUNTS)).fetchall()
        row = await (await cur.execute(OLDEST)).fetchone()
        workers = await (await cur.execute(WORKERS)).fetchall()
    return DatabaseFigures(jobs, row[0] if row else None, workers).render()

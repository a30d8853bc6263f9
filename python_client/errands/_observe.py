"""What a worker reports about its tries when asked to: Prometheus counts
(``metrics_port``: :mod:`errands._worker_stats`, served by :mod:`errands.metrics`)
and OpenTelemetry spans (``otel`` or :func:`errands.tracing.enable`).

:func:`observer_for` builds the :class:`Observer` of a worker, or None when it
reports nothing: then the executor's only cost is one ``is None`` check per try,
and neither extra is imported.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from errands import _trace_state
from errands._options import WorkerOptions
from errands.job import Job

if TYPE_CHECKING:
    from errands._worker_stats import WorkerStats
    from errands.metrics import MetricsServer
    from errands.tracing import JobSpans


class Observer:
    """Counts and/or traces the tries of one worker."""

    def __init__(self, stats: WorkerStats | None, spans: JobSpans | None) -> None:
        self.stats = stats
        self.spans = spans
        self.server: MetricsServer | None = None
        # ended(job, outcome, duration, started, error=None): a try ended with
        # outcome (errands._task_results), started at that time.perf_counter().
        # The one callable that does it: one call per try on the hot path.
        self.ended: Callable[..., None] = (
            self._both if stats is not None and spans is not None
            else stats.ended if stats is not None
            else spans.ended if spans is not None
            else lambda *_args: None
        )  # fmt: skip

    def serve(self, options: WorkerOptions) -> None:
        """Start the metrics endpoint (when ``options`` asks for one)."""
        if self.stats is not None and options.metrics_port is not None:
            from errands.metrics import serve

            self.server = serve(self.stats, options.metrics_host, options.metrics_port)

    def close(self) -> None:
        """Stop the metrics endpoint (blocks until its thread ends)."""
        if self.server is not None:
            self.server.close()
            self.server = None

    def _both(
        self, job: Job, outcome: int, duration: float, started: float,
        error: BaseException | None = None,
    ) -> None:  # fmt: skip
        assert self.stats is not None and self.spans is not None
        self.stats.ended(job, outcome, duration, started)
        self.spans.ended(job, outcome, duration, started, error)


def observer_for(
    options: WorkerOptions,
    tasks: Sequence[str],
    running: Callable[[], int],
    buffered: Callable[[], int],
) -> Observer | None:
    """The observer a worker with ``options`` needs (None: none).  ``running`` and
    ``buffered`` give its busy slots and its local queue's length (gauges)."""
    stats = spans = None
    if options.metrics_port is not None:
        _need("prometheus_client", "metrics_port", "metrics")
        # Imported here, when the worker is made: a process with gc_tuning freezes
        # what exists before the worker starts (errands._gc), these modules included.
        import errands.metrics  # noqa: F401
        from errands._worker_stats import WorkerStats

        stats = WorkerStats(tasks)
        stats.running = running
        stats.buffered = buffered
    if options.otel or _trace_state.tracer is not None:
        _need("opentelemetry", "otel", "otel")
        from errands import tracing

        if _trace_state.tracer is None:
            tracing.enable()
        spans = tracing.JobSpans(_trace_state.tracer)
    return Observer(stats, spans) if stats is not None or spans is not None else None


def _need(module: str, option: str, extra: str) -> None:
    """Fail at once, with the fix, when an optional extra is missing."""
    if importlib.util.find_spec(module) is None:
        raise RuntimeError(f"errands: {option} needs {module}: pip install 'errands[{extra}]'")

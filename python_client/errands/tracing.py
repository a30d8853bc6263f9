"""OpenTelemetry spans around enqueueing and job execution (``errands[otel]``).

:func:`enable` (or a worker's ``otel=True`` / ``errands worker --otel``) turns it
on for the process: each ``add_job`` / ``add_jobs`` from Python
(:mod:`errands.enqueue`, :class:`~errands.WorkerUtils`, the helpers of a task)
runs in a ``PRODUCER`` span, and the span's W3C ``traceparent`` is stored with
the jobs in the same statement (``errands.set_traceparent``: column
``traceparent`` of ``errands.jobs``).  A worker then runs each try of such a job
in a ``CONSUMER`` span whose parent is that context, so the execution continues
the caller's trace across processes; every retry is another child of the same
enqueue span and links to it.  Spans go to the tracer provider you configure
(the global one by default); without one OpenTelemetry drops them.

Off (the default), enqueueing reads one module attribute and imports nothing
of OpenTelemetry; the worker does not import this module at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeAlias

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from psycopg import sql

from errands import _queries as q
from errands import _trace_state
from errands._task_results import FAILED, OUTCOMES, RETRIED
from errands.job import Job, JobSpec, SpecLike

__all__ = ["JobSpans", "disable", "enable", "enqueue_span", "is_enabled", "traced", "traced_async"]

Query: TypeAlias = "sql.SQL | sql.Composed"

_propagator = TraceContextTextMapPropagator()


def enable(tracer_provider: trace.TracerProvider | None = None) -> None:
    """Trace enqueueing and job execution in this process, with ``tracer_provider``
    (default: the global one, ``opentelemetry.trace.set_tracer_provider``).
    Workers made after this call trace their jobs."""
    from errands import __version__

    _trace_state.tracer = trace.get_tracer("errands", __version__, tracer_provider)


def disable() -> None:
    """Stop tracing new enqueues and new workers."""
    _trace_state.tracer = None


def is_enabled() -> bool:
    return _trace_state.tracer is not None


class EnqueueSpan:
    """What an enqueue needs from its span: the traceparent to store, and a place
    for the jobs it added."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, trace.set_span_in_context(span))
        self.traceparent: str | None = carrier.get("traceparent")

    def added(self, jobs: list[Job]) -> list[Job]:
        """The jobs as added, their ``traceparent`` set (the rows were read before
        set_traceparent wrote it)."""
        if len(jobs) == 1:
            self.span.set_attribute("errands.job_id", jobs[0].id)
        return [dataclasses.replace(job, traceparent=self.traceparent) for job in jobs]


@contextmanager
def enqueue_span(tasks: Sequence[str], queue: str | None, count: int) -> Iterator[EnqueueSpan]:
    """A ``PRODUCER`` span around adding ``count`` jobs of ``tasks``."""
    tracer = _trace_state.tracer
    names = sorted(set(tasks))
    attributes: dict[str, Any] = {
        "messaging.system": "errands",
        "messaging.operation.type": "send",
        "errands.job_count": count,
    }
    if len(names) == 1:
        attributes["errands.task"] = names[0]
    if queue is not None:
        attributes["errands.queue"] = queue
    name = f"errands enqueue {names[0]}" if len(names) == 1 else "errands enqueue"
    with tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes) as span:
        yield EnqueueSpan(span)


def spec_identifiers(specs: Sequence[SpecLike]) -> list[str]:
    return [
        spec.identifier if isinstance(spec, JobSpec) else str(spec.get("identifier"))
        for spec in specs
    ]


Run: TypeAlias = Callable[[Query, dict[str, Any]], list[Job]]
RunAsync: TypeAlias = Callable[[Query, dict[str, Any]], Awaitable[list[Job]]]


def traced(tasks: Sequence[str], queue: str | None, params: dict[str, Any], query: Query,
           run: Run) -> list[Job]:  # fmt: skip
    """Run the enqueue ``query`` (``ADD_JOB`` or ``ADD_JOBS``) with ``run`` in a span,
    storing the span's traceparent with the jobs in the same statement."""
    with enqueue_span(tasks, queue, len(tasks)) as span:
        if span.traceparent is None:  # no tracer provider: nothing to continue
            return run(query, params)
        jobs = run(_TRACED[id(query)], {**params, "traceparent": span.traceparent})
        return span.added(jobs)


async def traced_async(tasks: Sequence[str], queue: str | None, params: dict[str, Any],
                       query: Query, run: RunAsync) -> list[Job]:  # fmt: skip
    """:func:`traced` for async enqueueing."""
    with enqueue_span(tasks, queue, len(tasks)) as span:
        if span.traceparent is None:
            return await run(query, params)
        jobs = await run(_TRACED[id(query)], {**params, "traceparent": span.traceparent})
        return span.added(jobs)


def _with_traceparent(query: Query) -> Query:
    # One statement: the CTE adds the jobs (once), then set_traceparent stores the
    # context on them (its UPDATE runs after the insert: it needs the CTE's ids).
    return sql.SQL(
        "WITH j AS ({}) SELECT j.* FROM j WHERE errands.set_traceparent("
        "ARRAY(SELECT j.id FROM j), %(traceparent)s::text) >= 0"
    ).format(query)


_TRACED: dict[int, Query] = {
    id(query): _with_traceparent(query) for query in (q.ADD_JOB, q.ADD_JOBS)
}


class JobSpans:
    """A worker's execution spans: one per try, open while it runs."""

    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer
        self._open: dict[int, trace.Span] = {}

    async def run(self, job: Job, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` (the try of ``job``) in its span."""
        parent = None
        links: list[Link] = []
        if job.traceparent:
            parent = _propagator.extract({"traceparent": job.traceparent})
            enqueued = trace.get_current_span(parent).get_span_context()
            if enqueued.is_valid:
                links.append(Link(enqueued, {"errands.link": "enqueue"}))
        attributes: dict[str, Any] = {
            "messaging.system": "errands",
            "messaging.operation.type": "process",
            "errands.task": job.task_identifier,
            "errands.job_id": job.id,
            "errands.attempt": job.attempts,
        }
        if job.queue_name is not None:
            attributes["errands.queue"] = job.queue_name
        span = self._tracer.start_span(
            f"errands run {job.task_identifier}", context=parent, kind=SpanKind.CONSUMER,
            links=links, attributes=attributes,
        )  # fmt: skip
        self._open[job.id] = span
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                await coro
        finally:
            self._open.pop(job.id, None)
            span.end()

    def ended(
        self, job: Job, outcome: int, duration: float, started: float,
        error: BaseException | None = None,
    ) -> None:  # fmt: skip
        """The try of ``job`` ended with ``outcome`` (errands._task_results)."""
        span = self._open.get(job.id)
        if span is None:
            return
        span.set_attribute("errands.outcome", OUTCOMES[outcome])
        if outcome in (FAILED, RETRIED) and error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))

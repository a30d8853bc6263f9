"""errands.tracing: an in-memory OpenTelemetry exporter sees each enqueue span as
the parent of the execution spans of its job (retries included), across a real
worker run; the traceparent is stored with the job."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import errands
from errands import tracing

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

_exporter = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(_exporter))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _exporter.clear()
    tracing.enable(_provider)
    try:
        yield _exporter
    finally:
        tracing.disable()


def _by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return sorted(
        (s for s in finished if s.name == name),
        key=lambda s: s.attributes.get("errands.attempt", 0) if s.attributes else 0,
    )


tries: dict[str, int] = {}


async def flaky(payload: Any, helpers: Any) -> None:
    tries[payload["k"]] = tries.get(payload["k"], 0) + 1
    if tries[payload["k"]] == 1:
        raise RuntimeError("first try fails")
    # Enqueued from inside the task: a child of this execution span.
    await helpers.add_job("child", {"from": payload["k"]})


async def child(payload: Any, helpers: Any) -> None:
    return None


TASKS = {"flaky": flaky, "child": child}


def test_execution_continues_the_enqueue_trace(
    db: str, spans: InMemorySpanExporter
) -> None:
    tracer = _provider.get_tracer("test")
    with psycopg.connect(db, autocommit=True) as conn:
        with tracer.start_as_current_span("request") as request:
            job = errands.add_job(conn, "flaky", {"k": "a"})
        stored = conn.execute(
            "SELECT traceparent FROM errands.jobs WHERE id = %s", [job.id]
        ).fetchone()
    assert stored is not None and job.traceparent == stored[0]
    ctx = request.get_span_context()
    assert stored[0].startswith(f"00-{ctx.trace_id:032x}-")

    asyncio.run(errands.run_once(db, TASKS))  # the first try fails
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SELECT errands.reschedule_jobs(ARRAY[%s::bigint], run_at => now())", [job.id])
    asyncio.run(errands.run_once(db, TASKS))  # the retry succeeds and enqueues a child

    finished = spans.get_finished_spans()
    (enqueue,) = _by_name(finished, "errands enqueue flaky")
    assert enqueue.kind is SpanKind.PRODUCER
    assert enqueue.parent is not None and enqueue.parent.span_id == ctx.span_id
    assert enqueue.attributes and enqueue.attributes["errands.job_id"] == job.id
    runs = _by_name(finished, "errands run flaky")
    assert [s.attributes["errands.attempt"] for s in runs if s.attributes] == [1, 2]
    for run in runs:
        assert run.kind is SpanKind.CONSUMER
        assert run.context is not None and run.context.trace_id == ctx.trace_id
        # Each try is a child of the enqueue span, and links to it.
        assert run.parent is not None and run.parent.span_id == enqueue.context.span_id
        assert [link.context.span_id for link in run.links] == [enqueue.context.span_id]
    first, second = runs
    assert first.attributes and first.attributes["errands.outcome"] == "retried"
    assert first.status.status_code is StatusCode.ERROR
    assert second.attributes and second.attributes["errands.outcome"] == "completed"
    assert second.status.status_code is not StatusCode.ERROR
    # The task's own enqueue is a child of its execution span.
    (child_enqueue,) = _by_name(finished, "errands enqueue child")
    assert child_enqueue.parent is not None
    assert child_enqueue.parent.span_id == second.context.span_id


def test_add_jobs_and_worker_utils_are_traced(db: str, spans: InMemorySpanExporter) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        jobs = errands.add_jobs(conn, [{"identifier": "child"}, {"identifier": "child"}])
    with errands.SyncWorkerUtils(db) as utils:
        one = utils.add_job("child", queue_name="q")

    async def more() -> list[errands.Job]:
        async with errands.WorkerUtils(db) as autils:
            return [await autils.add_job("child"), *await autils.add_jobs([{"identifier": "x"}])]

    jobs += [one, *asyncio.run(more())]
    with psycopg.connect(db) as conn:
        stored = dict(conn.execute("SELECT id, traceparent FROM errands.jobs").fetchall())
    assert all(job.traceparent and stored[job.id] == job.traceparent for job in jobs)
    enqueues = [s for s in spans.get_finished_spans() if s.name.startswith("errands enqueue")]
    assert len(enqueues) == 4
    assert {s.context.span_id for s in enqueues if s.context} == {
        int(job.traceparent.split("-")[2], 16) for job in jobs if job.traceparent
    }
    (queued,) = [s for s in enqueues if s.attributes and s.attributes.get("errands.queue")]
    assert queued.attributes and queued.attributes["errands.queue"] == "q"
    # The two specs of one add_jobs call share one span and one traceparent.
    assert jobs[0].traceparent == jobs[1].traceparent


def test_off_by_default_stores_nothing(db: str) -> None:
    assert not tracing.is_enabled()
    with psycopg.connect(db, autocommit=True) as conn:
        job = errands.add_job(conn, "child")
        assert job.traceparent is None
        row = conn.execute("SELECT traceparent FROM errands.jobs").fetchone()
    assert row == (None,)


def test_set_traceparent_checks_its_input(conn: psycopg.Connection[Any]) -> None:
    job = errands.add_job(conn, "child")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="'not-a-trace'"):
        conn.execute("SELECT errands.set_traceparent(ARRAY[%s::bigint], 'not-a-trace')", [job.id])
    good = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    row = conn.execute(
        "SELECT errands.set_traceparent(ARRAY[%s::bigint], %s)", [job.id, good]
    ).fetchone()
    assert row == (1,)
    # A running job keeps the context its try started with.
    conn.execute("SELECT errands.get_jobs('w', ARRAY['child'], 1)")
    other = "00-" + "12" * 16 + "-" + "34" * 8 + "-01"
    row = conn.execute(
        "SELECT errands.set_traceparent(ARRAY[%s::bigint], %s)", [job.id, other]
    ).fetchone()
    assert row == (0,)

"""Finished-job history end to end with a real worker: results stored with the
completion, retention 0 deletes, the result size limit, and pruning by a live worker."""

from __future__ import annotations

import asyncio
from dataclasses import fields
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from worker_support import job, wait_until

import errands
from errands import FinishedJob, Helpers, SyncWorkerUtils, task


@pytest.fixture(autouse=True)
def history_on(conn: psycopg.Connection[Any]) -> None:
    """History is off by default (retention 0); these tests keep finished jobs an hour."""
    conn.execute("SELECT errands.set_retention('1 hour')")


def run_once(db: str, tasks: Any) -> None:
    asyncio.run(errands.run_once(db, tasks))


def finished(db: str, job_id: int) -> FinishedJob | None:
    with SyncWorkerUtils(db) as utils:
        return utils.get_finished_job(job_id)


def test_finished_job_fields_are_the_view_columns(conn: psycopg.Connection[Any]) -> None:
    columns = [
        name
        for (name,) in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'errands.finished_jobs'::regclass"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ).fetchall()
    ]
    assert [f.name for f in fields(FinishedJob)] == columns


def test_results_are_stored_with_the_completion(db: str, conn: psycopg.Connection[Any]) -> None:
    @task
    async def answer(payload: Any, helpers: Helpers) -> Any:
        return {"answer": payload["n"] * 2}

    @task
    def sync_answer(payload: Any, helpers: Helpers) -> Any:
        return [1, "two", None]

    @task
    def nothing(payload: Any, helpers: Helpers) -> None:
        return None

    @task
    async def batch(payload: Any, helpers: Helpers) -> Any:
        async def double(x: int) -> int:
            return x * 2

        return [double(x) for x in payload]

    a = errands.add_job(conn, "answer", {"n": 21}, queue_name="hq", job_key="k-answer")
    s = errands.add_job(conn, "sync_answer")
    n = errands.add_job(conn, "nothing")
    b = errands.add_job(conn, "batch", [1, 2, 3])
    run_once(db, [answer, sync_answer, nothing, batch])

    got = finished(db, a.id)
    assert got is not None
    assert (got.state, got.result, got.queue_name, got.key, got.attempts) == (
        "completed", {"answer": 42}, "hq", "k-answer", 1,
    )  # fmt: skip
    assert got.payload == {"n": 21} and got.finished_at >= got.created_at
    assert [(j.state, j.result) for j in (finished(db, s.id), finished(db, n.id))] == [  # type: ignore[union-attr]
        ("completed", [1, "two", None]),
        ("completed", None),
    ]
    got_b = finished(db, b.id)
    assert got_b is not None and got_b.result == [2, 4, 6]
    # errands.jobs keeps showing only unfinished jobs.
    assert job(conn, a.id) is None
    assert finished(db, 10**12) is None


def test_unserialisable_or_oversized_result_fails_the_job(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    @task
    def weird(payload: Any, helpers: Helpers) -> Any:
        return object()

    @task
    async def huge(payload: Any, helpers: Helpers) -> Any:
        return "x" * 200

    w = errands.add_job(conn, "weird")
    h = errands.add_job(conn, "huge")
    conn.execute("SELECT errands.set_max_payload_bytes(100)")
    run_once(db, [weird, huge])
    row = job(conn, w.id)
    assert row is not None and row["attempts"] == 1
    assert "returned a object that is not JSON-serialisable" in row["last_error"]
    row = job(conn, h.id)
    assert row is not None
    assert "result is 202 bytes of JSON, over the limit of 100 bytes" in row["last_error"]
    assert finished(db, w.id) is None and finished(db, h.id) is None


def test_retention_zero_deletes_at_completion(db: str, conn: psycopg.Connection[Any]) -> None:
    @task
    def gone(payload: Any, helpers: Helpers) -> Any:
        return {"kept": False}

    @task
    def kept(payload: Any, helpers: Helpers) -> Any:
        return 1

    conn.execute("SELECT errands.set_retention('0')")
    conn.execute("SELECT errands.set_task_retention('kept', '1 day')")
    g = errands.add_job(conn, "gone")
    k = errands.add_job(conn, "kept")
    run_once(db, [gone, kept])
    assert job(conn, g.id) is None and finished(db, g.id) is None
    got = finished(db, k.id)
    assert got is not None and got.result == 1


def test_a_live_worker_prunes_expired_history(db: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO errands._finished_jobs (id, task_identifier, payload, priority, attempts,"
        " max_attempts, created_at, finished_at, state)"
        " SELECT -i, 'old', '{}', 0, 1, 25, now(), now() - interval '2 hours', 'completed'"
        " FROM generate_series(1, 25000) i"
    )
    conn.execute(
        "INSERT INTO errands._finished_jobs (id, task_identifier, payload, priority, attempts,"
        " max_attempts, created_at, finished_at, state)"
        " VALUES (-999999, 'old', '{}', 0, 1, 25, now(), now() - interval '10 minutes',"
        " 'completed')"
    )

    def remaining() -> int:
        row = conn.execute("SELECT count(*) FROM errands._finished_jobs").fetchone()
        return int(row[0]) if row else -1

    @task
    def idle(payload: Any, helpers: Helpers) -> None: ...

    async def main() -> None:
        runner = await errands.run(db, [idle])
        try:
            await asyncio.to_thread(wait_until, lambda: remaining() == 1, 20.0, "pruning")
        finally:
            await runner.stop()

    asyncio.run(main())
    # The row younger than the 1 hour retention stays.
    with conn.cursor(row_factory=dict_row) as cur:
        assert cur.execute("SELECT id FROM errands.finished_jobs").fetchall() == [{"id": -999999}]

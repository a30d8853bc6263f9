"""Outcomes chosen by a task: ``raise errands.Snooze(delay)`` (run again later, the
try not counted) and ``raise errands.Fail(reason, retry=False)`` (failed at once),
end to end with a real worker, for async and sync tasks and batch jobs."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from worker_support import jobs, wait_until

import errands
from errands import Fail, Helpers, Snooze, task


def run_once(db: str, tasks: Any, **options: Any) -> None:
    asyncio.run(errands.run_once(db, tasks, **options))


def view_row(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    cur = conn.execute(
        "SELECT state, attempts, max_attempts, last_error, payload, key,"
        " run_at - now() AS delay FROM errands.jobs WHERE id = %s",
        [job_id],
    )
    row = cur.fetchone()
    assert row is not None and cur.description is not None
    return dict(zip([c.name for c in cur.description], row, strict=True))


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_snoozed_job_runs_again_after_the_delay_with_the_same_attempt(
    db: str, conn: psycopg.Connection[Any], kind: str
) -> None:
    runs: list[tuple[float, int]] = []  # (monotonic time, attempts) of each try

    def body(helpers: Helpers) -> None:
        runs.append((time.monotonic(), helpers.job.attempts))
        if len(runs) == 1:
            raise Snooze(0.6 if kind == "async" else timedelta(milliseconds=600))

    if kind == "async":

        @task("nap")
        async def nap_async(payload: Any, helpers: Helpers) -> None:
            body(helpers)

        tasks = [nap_async]
    else:

        @task("nap")
        def nap_sync(payload: Any, helpers: Helpers) -> None:
            body(helpers)

        tasks = [nap_sync]

    errands.add_job(conn, "nap", {"n": 1}, job_key="nap-key")

    async def main() -> None:
        runner = await errands.run(db, tasks, poll_interval=0.1, log_jobs=False)
        try:
            deadline = time.monotonic() + 10
            while len(runs) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # the completion is written
        finally:
            await runner.stop()

    asyncio.run(main())
    assert len(runs) == 2, runs
    assert runs[1][0] - runs[0][0] >= 0.55  # not before the delay
    assert [attempts for _, attempts in runs] == [1, 1]  # the snoozed try was given back
    assert jobs(conn) == []  # the second try completed


def test_snooze_leaves_the_job_scheduled_with_its_key_and_payload(
    db: str, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    @task
    async def later(payload: Any, helpers: Helpers) -> None:
        raise Snooze(30)

    job = errands.add_job(conn, "later", {"n": 1}, job_key="later-key", queue_name="q1")
    with caplog.at_level(logging.INFO, logger="errands.worker"):
        run_once(db, [later])
    row = view_row(conn, job.id)
    assert (row["state"], row["attempts"], row["key"], row["payload"], row["last_error"]) == (
        "scheduled", 0, "later-key", {"n": 1}, None,
    )  # fmt: skip
    assert timedelta(seconds=29) < row["delay"] <= timedelta(seconds=30)
    queue_lock = conn.execute(
        "SELECT locked_by FROM errands._queues WHERE queue_name = 'q1'"
    ).fetchone()
    assert queue_lock == (None,)
    assert any("snoozed for 30 s" in r.getMessage() for r in caplog.records), caplog.text


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_fail_without_retry_ends_failed_after_one_attempt(
    db: str, conn: psycopg.Connection[Any], kind: str
) -> None:
    calls: list[int] = []

    if kind == "async":

        @task("doomed")
        async def doomed_async(payload: Any, helpers: Helpers) -> None:
            calls.append(helpers.job.attempts)
            raise Fail("the account was deleted", retry=False)

        tasks = [doomed_async]
    else:

        @task("doomed")
        def doomed_sync(payload: Any, helpers: Helpers) -> None:
            calls.append(helpers.job.attempts)
            raise Fail("the account was deleted")

        tasks = [doomed_sync]

    job = errands.add_job(conn, "doomed", {}, max_attempts=5)
    run_once(db, tasks)
    conn.execute("UPDATE errands._jobs SET run_at = now() - interval '1 day'")
    run_once(db, tasks)  # nothing left to run: the job is failed for good
    assert calls == [1]
    row = view_row(conn, job.id)
    assert (row["state"], row["attempts"], row["max_attempts"], row["last_error"]) == (
        "failed", 5, 5, "the account was deleted",
    )  # fmt: skip


def test_fail_with_retry_is_an_ordinary_failed_try(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    @task
    def flaky(payload: Any, helpers: Helpers) -> None:
        raise Fail("upstream said 503", retry=True)

    job = errands.add_job(conn, "flaky", {})
    run_once(db, [flaky])
    row = view_row(conn, job.id)
    assert (row["state"], row["attempts"], row["last_error"]) == (
        "retrying", 1, "upstream said 503",
    )  # fmt: skip


def test_batch_job_snoozes_and_fails_as_a_whole(db: str, conn: psycopg.Connection[Any]) -> None:
    @task
    async def batch_snooze(payload: Any, helpers: Helpers) -> list[Any]:
        raise Snooze(60)

    @task
    async def batch_fail(payload: Any, helpers: Helpers) -> list[Any]:
        raise Fail("bad batch")

    snoozed = errands.add_job(conn, "batch_snooze", [1, 2, 3])
    failed = errands.add_job(conn, "batch_fail", [4, 5])
    run_once(db, [batch_snooze, batch_fail])
    row = view_row(conn, snoozed.id)
    assert (row["state"], row["attempts"], row["payload"]) == ("scheduled", 0, [1, 2, 3])
    row = view_row(conn, failed.id)
    assert (row["state"], row["payload"], row["last_error"]) == ("failed", [4, 5], "bad batch")


def test_snooze_checks_its_delay() -> None:
    assert Snooze(timedelta(minutes=2)).delay == 120.0
    assert Snooze(0).delay == 0.0
    for bad in (-1, math.inf, math.nan, timedelta(seconds=-5)):
        with pytest.raises(ValueError, match="finite and >= 0"):
            Snooze(bad)
    with pytest.raises(TypeError, match="seconds or a timedelta"):
        Snooze("30")  # type: ignore[arg-type]


def test_exported_from_the_package() -> None:
    assert errands.Snooze is Snooze and errands.Fail is Fail
    assert {"Snooze", "Fail"} <= set(errands.__all__)


def test_snoozes_and_fails_are_reported_in_batches(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """60 jobs, one worker fetching them together: far fewer SQL calls than jobs
    (counted by PostgreSQL's own function statistics)."""
    conn.execute(f"ALTER DATABASE {conn.info.dbname} SET track_functions = 'pl'")

    @task
    async def nap(payload: Any, helpers: Helpers) -> None:
        raise Snooze(60)

    @task
    async def doomed(payload: Any, helpers: Helpers) -> None:
        raise Fail("no")

    errands.add_jobs(conn, [errands.JobSpec("nap", {"i": i}) for i in range(30)])
    errands.add_jobs(conn, [errands.JobSpec("doomed", {"i": i}) for i in range(30)])
    run_once(db, [nap, doomed], concurrency=60, log_jobs=False)
    states = conn.execute(
        "SELECT task_identifier, state, attempts, count(*) FROM errands.jobs GROUP BY 1, 2, 3"
    ).fetchall()
    assert sorted(states) == [("doomed", "failed", 25, 30), ("nap", "scheduled", 0, 30)]

    def counted() -> dict[str, int]:
        # A backend flushes its function statistics when it exits: wait for the
        # worker's connections to be gone and their counts to show.
        others = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchone()
        conn.execute("SELECT pg_stat_clear_snapshot()")
        calls = dict(
            conn.execute(
                "SELECT funcname, calls FROM pg_stat_user_functions WHERE funcname IN"
                " ('worker_snooze_jobs', 'worker_fail_jobs_now')"
            ).fetchall()
        )
        return calls if others == (0,) and len(calls) == 2 else {}

    calls = wait_until(counted, what="the worker's function statistics")
    # Typically 1 call each (measured); fewer calls than jobs is what batching means.
    assert calls["worker_snooze_jobs"] < 30 and calls["worker_fail_jobs_now"] < 30, calls

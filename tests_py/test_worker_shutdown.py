"""Shutdown: graceful (SIGTERM), forced (second signal), and the shutdown timeout."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import psycopg
from worker_support import (
    MARKS_TABLE,
    db_now,
    finish,
    job,
    jobs,
    marks,
    start_worker,
    wait_until,
)

import errands
from errands import Events, Helpers, task


def test_sigterm_finishes_running_jobs_and_returns_fetched_ones(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(MARKS_TABLE)
    proc = start_worker(db, "--concurrency", "2", "--poll-interval", "0.1")
    try:
        running = errands.add_job(conn, "sleepy", {"label": "running", "seconds": 1.0})
        wait_until(lambda: ("running", "started") in marks(conn), what="the first job")

        # Hold the worker's next fetch (it polls every 0.1 s) on a table lock while a
        # second job is added, then signal: that fetch returns a job after SIGTERM.
        with psycopg.connect(db) as blocker:
            blocker.execute("LOCK TABLE errands._jobs IN EXCLUSIVE MODE")
            fetched = errands.add_job(blocker, "sleepy", {"label": "fetched", "seconds": 0})
            wait_until(
                lambda: conn.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%%errands.get_jobs%%'"
                    " AND wait_event_type = 'Lock'"
                ).fetchone(),
                what="a fetch blocked on the lock",
            )
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)  # the worker handles the signal while its fetch waits
        code, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err
    assert f"returned {fetched.id}" in out
    assert "exited" in out
    assert marks(conn) == [("running", "started"), ("running", "finished")]
    assert job(conn, running.id) is None
    row = job(conn, fetched.id)
    assert row is not None
    assert (row["attempts"], row["locked_by"], row["last_error"]) == (0, None, None)
    # The job is runnable again at once.
    assert row["run_at"] <= db_now(conn)


def test_second_signal_forces_shutdown(db: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute(MARKS_TABLE)
    proc = start_worker(db, "--concurrency", "3", "--shutdown-timeout", "60")
    try:
        a = errands.add_job(conn, "sleepy", {"label": "async", "seconds": 60}, queue_name="q")
        s = errands.add_job(conn, "sync_sleepy", {"label": "sync", "seconds": 60})
        wait_until(lambda: len(marks(conn)) == 2, what="both jobs to start")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code, _, err = finish(proc)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err
    assert elapsed < 5, "forced shutdown does not wait for the (60 s) tasks"
    assert sorted(marks(conn)) == [("async", "started"), ("sync", "started")]
    for added in (a, s):
        row = job(conn, added.id)
        assert row is not None
        assert row["last_error"] == "WorkerShutdown: worker shutdown"
        assert (row["attempts"], row["locked_by"]) == (1, None)
        assert row["attempts"] < row["max_attempts"], "it will be retried"
    # The named queue was released with the job.
    assert conn.execute("SELECT locked_by FROM errands._queues").fetchall() == [(None,)]


def test_shutdown_timeout_aborts_and_fails_running_jobs(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    aborted: list[str] = []
    events = Events()
    forced: list[list[int]] = []
    events.on("worker:shutdown:force", lambda e: forced.append(list(e.data["job_ids"])))
    started: list[int] = []
    events.on("job:start", lambda e: started.append(e.job.id if e.job else 0))

    @task
    async def waits_for_abort(payload: Any, helpers: Helpers) -> None:
        await helpers.abort.wait_async()
        aborted.append("async")
        await asyncio.sleep(60)  # ignores the signal: cancelled, failed

    @task
    def sync_waits_for_abort(payload: Any, helpers: Helpers) -> None:
        if helpers.abort.wait(60):
            aborted.append("sync")
            raise RuntimeError("stopped early")  # honours it: its own outcome counts

    @task
    async def short(payload: Any, helpers: Helpers) -> None:
        await asyncio.sleep(0.1)

    async def main() -> float:
        runner = await errands.run(
            db, [waits_for_abort, sync_waits_for_abort, short], shutdown_timeout=0.5,
            events=events, poll_interval=0.1,
        )  # fmt: skip
        ids = [
            errands.add_job(conn, name).id
            for name in ("waits_for_abort", "sync_waits_for_abort", "short")
        ]
        # Started, not merely locked: a fetched job is locked before it starts.
        while len(started) < 3:
            await asyncio.sleep(0.02)
        assert len(ids) == 3
        t0 = time.monotonic()
        await runner.stop()
        return time.monotonic() - t0

    elapsed = asyncio.run(main())
    assert 0.5 <= elapsed < 3
    assert sorted(aborted) == ["async", "sync"]
    rows = jobs(conn)
    assert [r["task_identifier"] for r in rows] == ["waits_for_abort", "sync_waits_for_abort"]
    assert forced == [[rows[0]["id"]]]
    assert [(r["attempts"], r["locked_by"], r["last_error"]) for r in rows] == [
        (1, None, "WorkerShutdown: worker shutdown"),
        (1, None, "RuntimeError: stopped early"),
    ]


def test_stop_is_clean_when_idle(db: str) -> None:
    @task
    async def noop(payload: Any, helpers: Helpers) -> None:
        pass

    async def main() -> None:
        runner = await errands.run(db, [noop])
        t0 = time.monotonic()
        await runner.stop()
        assert time.monotonic() - t0 < 1
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert tasks == [], tasks

    asyncio.run(main())

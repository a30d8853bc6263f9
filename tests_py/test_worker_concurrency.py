"""Parallelism, NOTIFY wake-up, named queues across processes, connection failures."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from worker_support import (
    MARKS_TABLE,
    finish,
    jobs,
    marks,
    start_worker,
    wait_until,
    wait_until_async,
)

import errands
from errands import Events, Helpers, task


def _assert_all_overlap(intervals: list[tuple[float, float]]) -> None:
    """Every interval overlaps every other: they all ran at the same time."""
    assert max(start for start, _ in intervals) < min(end for _, end in intervals), intervals


def test_async_tasks_run_concurrently(db: str, conn: psycopg.Connection[Any]) -> None:
    intervals: list[tuple[float, float]] = []

    @task
    async def nap(payload: Any, helpers: Helpers) -> None:
        start = time.monotonic()
        await asyncio.sleep(0.5)
        intervals.append((start, time.monotonic()))

    errands.add_jobs(conn, [errands.JobSpec("nap") for _ in range(10)])
    asyncio.run(errands.run_once(db, [nap], concurrency=10))
    assert len(intervals) == 10
    _assert_all_overlap(intervals)


def test_sync_tasks_run_in_parallel_threads(db: str, conn: psycopg.Connection[Any]) -> None:
    intervals: list[tuple[float, float]] = []

    @task
    def blocking_nap(payload: Any, helpers: Helpers) -> None:
        start = time.monotonic()
        time.sleep(0.5)
        intervals.append((start, time.monotonic()))

    errands.add_jobs(conn, [errands.JobSpec("blocking_nap") for _ in range(10)])
    asyncio.run(errands.run_once(db, [blocking_nap], concurrency=10))
    assert len(intervals) == 10
    _assert_all_overlap(intervals)


def test_concurrency_limit_is_respected(db: str, conn: psycopg.Connection[Any]) -> None:
    running = 0
    peak = 0

    @task
    async def counted(payload: Any, helpers: Helpers) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    @task
    def sync_counted(payload: Any, helpers: Helpers) -> None:
        time.sleep(0.02)

    errands.add_jobs(conn, [errands.JobSpec("counted") for _ in range(12)])
    asyncio.run(errands.run_once(db, [counted, sync_counted], concurrency=3))
    assert peak == 3
    assert jobs(conn) == []


def test_notify_wakes_an_idle_worker(db: str, conn: psycopg.Connection[Any]) -> None:
    started: list[float] = []

    @task
    async def quick(payload: Any, helpers: Helpers) -> None:
        started.append(time.monotonic())

    async def main() -> float:
        runner = await errands.run(db, [quick], poll_interval=10.0)
        try:
            await asyncio.sleep(0.3)  # the first poll is over: the worker is idle
            added = time.monotonic()
            errands.add_job(conn, "quick")
            await wait_until_async(lambda: started, timeout=5, what="the job to start")
            return started[0] - added
        finally:
            await runner.stop()

    latency = asyncio.run(main())
    assert latency < 1.0
    assert jobs(conn) == []


def test_user_pool_is_left_open(db: str, conn: psycopg.Connection[Any]) -> None:
    @task
    async def noop(payload: Any, helpers: Helpers) -> None:
        pass

    async def main() -> None:
        async with AsyncConnectionPool(db, min_size=1, max_size=4, open=False) as pool:
            await pool.open()
            runner = await errands.run(pool, [noop], poll_interval=0.1)
            errands.add_job(conn, "noop")
            await wait_until_async(lambda: not jobs(conn), what="the job to run")
            await runner.stop()
            assert not pool.closed
            async with pool.connection() as c:
                await c.execute("SELECT 1")

    asyncio.run(main())


def test_survives_lost_connections(db: str, conn: psycopg.Connection[Any]) -> None:
    """Killing every worker connection: the completion is still written, LISTEN reconnects."""
    events = Events()
    seen: list[str] = []
    events.on("*", lambda e: seen.append(e.name))
    ran: list[str] = []
    my_pid = conn.info.backend_pid

    @task
    async def killer(payload: Any, helpers: Helpers) -> None:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as c:
            await c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s",
                [my_pid],
            )
        ran.append("killer")

    @task
    async def after(payload: Any, helpers: Helpers) -> None:
        ran.append("after")

    async def main() -> None:
        runner = await errands.run(db, [killer, after], events=events, poll_interval=30.0)
        try:
            errands.add_job(conn, "killer")
            await wait_until_async(lambda: "pool:listen:success" in seen[2:], what="relisten")
            await wait_until_async(lambda: not jobs(conn), what="the killer job to complete")
            errands.add_job(conn, "after")  # found through the new LISTEN connection
            await wait_until_async(lambda: "after" in ran, timeout=5, what="the second job")
        finally:
            await runner.stop()

    asyncio.run(main())
    # The completion went through a new pool connection (a dead pooled one is
    # either discarded when taken or fails and is retried: worker:report:error).
    assert ran == ["killer", "after"]
    assert "pool:listen:error" in seen
    assert jobs(conn) == []


def test_named_queue_is_serial_across_processes(db: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute(MARKS_TABLE)
    workers = [start_worker(db, "--concurrency", "3", "--poll-interval", "0.05") for _ in range(3)]
    try:
        errands.add_jobs(
            conn,
            [
                errands.JobSpec("sleepy", {"label": f"q{i}", "seconds": 0.05}, queue_name="serial")
                for i in range(8)
            ]
            + [errands.JobSpec("sleepy", {"label": f"free{i}", "seconds": 0.05}) for i in range(4)],
        )
        wait_until(lambda: not jobs(conn), timeout=20, what="all jobs to run")
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        results = [finish(proc) for proc in workers]
    assert [code for code, _, _ in results] == [0, 0, 0], [err for _, _, err in results]

    rows = conn.execute(
        "SELECT label, what FROM marks WHERE label LIKE 'q%' ORDER BY at, id"
    ).fetchall()
    assert len(rows) == 16
    # Strictly one job of the queue at a time: started(x), finished(x), started(y), ...
    for i in range(0, 16, 2):
        (label_a, what_a), (label_b, what_b) = rows[i], rows[i + 1]
        assert (what_a, what_b, label_a) == ("started", "finished", label_b), rows
    # In queue order (priority, run_at, id).
    assert [label for label, what in rows if what == "started"] == [f"q{i}" for i in range(8)]
    assert len(marks(conn)) == 24

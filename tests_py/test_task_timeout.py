"""Task timeouts: ``@task(timeout=seconds)``.  A try running longer fails with
``TaskTimeout`` and is retried like any failure; an async task is cancelled, a sync
task's thread is left to finish while the worker goes on."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from worker_support import jobs

import errands
from errands import Helpers, task


def run_once(db: str, tasks: Any, **options: Any) -> None:
    asyncio.run(errands.run_once(db, tasks, **options))


def test_async_task_past_its_timeout_is_cancelled_and_failed(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    seen: list[str] = []

    @task(timeout=0.3)
    async def slow(payload: Any, helpers: Helpers) -> None:
        seen.append("started")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        seen.append("finished")

    @task
    async def quick(payload: Any, helpers: Helpers) -> None:
        seen.append("quick")

    errands.add_job(conn, "slow", {})
    errands.add_job(conn, "quick", {})
    started = time.monotonic()
    run_once(db, [slow, quick])
    assert time.monotonic() - started < 20  # not the task's 30 s
    assert sorted(seen) == ["cancelled", "quick", "started"]
    [job] = jobs(conn)
    assert job["task_identifier"] == "slow"
    assert job["last_error"] == "TaskTimeout: task exceeded its 0.3 s timeout"
    assert job["attempts"] == 1 and job["locked_by"] is None  # retried later, as any failure


def test_sync_task_past_its_timeout_is_failed_and_its_thread_left_running(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    release = threading.Event()
    finished = threading.Event()
    ran: list[str] = []

    @task(timeout=0.3)
    def stuck(payload: Any, helpers: Helpers) -> None:
        release.wait(30)
        finished.set()

    @task
    def after(payload: Any, helpers: Helpers) -> None:
        ran.append("after")

    errands.add_job(conn, "stuck", {}, priority=0)
    errands.add_job(conn, "after", {}, priority=1)
    try:
        # One slot, one thread: "after" runs in an extra thread while "stuck" hangs.
        run_once(db, [stuck, after], concurrency=1)
        assert ran == ["after"]
        assert not finished.is_set()  # the timed-out thread was not stopped
        [job] = jobs(conn)
        assert job["task_identifier"] == "stuck"
        assert job["last_error"] == "TaskTimeout: task exceeded its 0.3 s timeout"
    finally:
        release.set()
    assert finished.wait(10)  # ... and finished on its own


def test_tasks_without_timeout_are_not_limited(db: str, conn: psycopg.Connection[Any]) -> None:
    @task
    async def short_sleep(payload: Any, helpers: Helpers) -> None:
        await asyncio.sleep(0.5)

    @task("named", timeout=5)
    async def named(payload: Any, helpers: Helpers) -> None:
        await asyncio.sleep(0.5)

    errands.add_job(conn, "short_sleep", {})
    errands.add_job(conn, "named", {})
    run_once(db, [short_sleep, named])
    assert jobs(conn) == []


@pytest.mark.parametrize("bad", [0, -1, "5", True])
def test_bad_timeout_is_refused(bad: Any) -> None:
    with pytest.raises(
        ValueError, match=f"timeout must be a positive number of seconds, got {bad!r}"
    ):
        task(timeout=bad)


def test_a_jobs_own_timeout_overrides_the_tasks(db: str, conn: psycopg.Connection[Any]) -> None:
    seen: list[Any] = []

    @task  # no timeout of its own: the job's applies
    async def slow(payload: Any, helpers: Helpers) -> None:
        seen.append(helpers.job.timeout)
        await asyncio.sleep(30)

    @task(timeout=0.2)  # the job allows more
    async def patient(payload: Any, helpers: Helpers) -> None:
        await asyncio.sleep(0.6)
        seen.append("patient done")

    errands.add_job(conn, "slow", {}, timeout=0.3)
    errands.add_job(conn, "patient", {}, timeout=timedelta(seconds=5))
    started = time.monotonic()
    run_once(db, [slow, patient])
    assert time.monotonic() - started < 20
    assert sorted(map(str, seen)) == ["0.3", "patient done"]
    [job] = jobs(conn)
    assert job["task_identifier"] == "slow"
    assert job["last_error"] == "TaskTimeout: task exceeded its 0.3 s timeout"
    assert job["timeout"] == timedelta(seconds=0.3)


def test_a_bad_job_timeout_is_refused_and_nothing_is_written(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="timeout must be positive"):
        errands.add_job(conn, "slow", {}, timeout=0)
    assert jobs(conn) == []

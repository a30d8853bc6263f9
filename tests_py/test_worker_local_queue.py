"""The worker's local queue: jobs fetched ahead of free slots.

A worker running fast jobs fetches more than its free slots (one get_jobs call for
many jobs); those jobs are locked by it before they start.  They must not be held
hostage: jobs that cannot start because every slot stays busy are handed back
(unlocked, their attempt given back) so other workers can run them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest
from worker_support import jobs

import errands
from errands import Events, Helpers, JobSpec, _local_queue, task
from errands import worker as worker_module


def test_fast_jobs_are_fetched_in_batches_larger_than_the_free_slots(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    fetched: list[int] = []

    @task
    async def quick(payload: Any, helpers: Helpers) -> None:
        pass

    events = Events()
    events.on("job:start", lambda e: fetched.append(e.job.id if e.job else 0))

    async def main() -> int:
        errands.add_jobs(conn, [JobSpec("quick")] * 400)
        calls = 0
        original = worker_module.Worker._fetch

        async def counting(self: worker_module.Worker, count: int) -> list[Any]:
            nonlocal calls
            calls += 1
            return await original(self, count)

        worker_module.Worker._fetch = counting  # type: ignore[method-assign]
        try:
            await errands.run_once(db, [quick], concurrency=2, events=events)
        finally:
            worker_module.Worker._fetch = original  # type: ignore[method-assign]
        return calls

    calls = asyncio.run(main())
    assert len(fetched) == len(set(fetched)) == 400
    assert jobs(conn) == []
    # Two slots, 400 jobs: one get_jobs call per free slot would be ~200 calls.
    assert calls <= 20, f"{calls} get_jobs calls for 400 jobs at concurrency 2"


def test_buffered_jobs_are_handed_back_when_every_slot_stays_busy(
    db: str, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_local_queue, "LOCAL_QUEUE_TTL", 0.5)
    started: list[str] = []
    done: list[str] = []
    events = Events()
    events.on("job:start", lambda e: started.append(e.job.task_identifier if e.job else ""))
    events.on("job:complete", lambda e: done.append(e.job.task_identifier if e.job else ""))
    gate: dict[str, asyncio.Event] = {}

    @task
    async def quick(payload: Any, helpers: Helpers) -> None:
        pass

    @task
    async def blocker(payload: Any, helpers: Helpers) -> None:
        await gate["open"].wait()

    async def wait_for(condition: Any, what: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    async def main() -> None:
        gate["open"] = asyncio.Event()
        runner = await errands.run(
            db, [quick, blocker], concurrency=1, poll_interval=0.1, events=events
        )
        try:
            # Warm-up: the worker learns that its jobs are fast and starts fetching ahead.
            errands.add_jobs(conn, [JobSpec("quick")] * 20)
            await wait_for(lambda: done.count("quick") == 20, "the warm-up jobs")
            errands.add_job(conn, "blocker")
            await wait_for(lambda: "blocker" in started, "the blocking job to start")
            waiting = [j.id for j in errands.add_jobs(conn, [JobSpec("quick")] * 5)]

            def waiting_rows() -> list[dict[str, Any]]:
                return [r for r in jobs(conn) if r["id"] in waiting]

            # Fetched ahead (locked by this worker) although the only slot is busy...
            await wait_for(
                lambda: all(r["locked_by"] for r in waiting_rows()), "the jobs to be fetched"
            )
            # ...then handed back unstarted, their attempt given back, and not fetched
            # again while the slot stays busy: another worker may run them.
            await wait_for(
                lambda: not any(r["locked_by"] for r in waiting_rows()), "the jobs to be returned"
            )
            await asyncio.sleep(1.0)
            rows = waiting_rows()
            assert [(r["locked_by"], r["attempts"]) for r in rows] == [(None, 0)] * 5
            assert started.count("quick") == 20
            gate["open"].set()
            await wait_for(lambda: done.count("quick") == 25, "the returned jobs to run")
        finally:
            gate["open"].set()
            await runner.stop()

    asyncio.run(main())
    assert jobs(conn) == []

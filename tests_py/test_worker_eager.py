"""Jobs whose task ends in its first step (Python >= 3.12 starts each job's task
eagerly: it may end inside the dispatch that started it).

What a user relies on either way: thousands of such jobs buffered in the local
queue run exactly once without deepening the stack; inside a task,
``asyncio.current_task()`` is the job's own task (``asyncio.timeout`` cancels the
job, never the worker); a context variable a task sets does not leak into the
next job; a task that suspends still runs beside the others.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from typing import Any

import psycopg
import pytest
from worker_support import jobs

import errands
from errands import Helpers, JobSpec, task

_seen: contextvars.ContextVar[int | None] = contextvars.ContextVar("_seen", default=None)


def test_thousands_of_instant_jobs_run_once_each(db: str, conn: psycopg.Connection[Any]) -> None:
    ran: list[int] = []
    depth: list[int] = []

    @task
    async def instant(payload: Any, helpers: Helpers) -> None:
        ran.append(helpers.job.id)
        frame: Any = sys._getframe()
        n = 0
        while frame is not None:
            n += 1
            frame = frame.f_back
        depth.append(n)

    errands.add_jobs(conn, [JobSpec("instant")] * 3000)
    # (A bound: a dispatch that recursed per job would not come back.)
    run = errands.run_once(db, [instant], concurrency=10, local_queue_size=2000)
    asyncio.run(asyncio.wait_for(run, 120))
    assert len(ran) == len(set(ran)) == 3000
    assert jobs(conn) == []
    # Each job runs at about the same depth: none ran inside the previous one's
    # freed slot (which would add frames per buffered job).
    assert max(depth) - min(depth) < 40, (min(depth), max(depth))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is Python >= 3.11")
def test_asyncio_timeout_in_a_task_cancels_that_job_only(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    tasks: list[asyncio.Task[Any] | None] = []

    @task
    async def bounded(payload: Any, helpers: Helpers) -> None:
        tasks.append(asyncio.current_task())
        async with asyncio.timeout(0.05):
            await asyncio.sleep(5)

    @task
    async def quick(payload: Any, helpers: Helpers) -> None:
        pass

    errands.add_jobs(conn, [JobSpec("bounded", max_attempts=1)] * 3 + [JobSpec("quick")] * 50)
    asyncio.run(errands.run_once(db, [bounded, quick], concurrency=5))
    left = conn.execute(
        "SELECT task_identifier, attempts, last_error FROM errands.jobs ORDER BY id"
    ).fetchall()
    # The three timed-out jobs failed for good (TimeoutError); every quick job ran.
    assert [(t, a) for t, a, _ in left] == [("bounded", 1)] * 3
    assert all("TimeoutError" in (e or "") for _, _, e in left), left
    # Each job had a task of its own (a shared one would have been cancelled
    # three times, the worker's with it).
    assert len({id(t) for t in tasks if t is not None}) == 3


def test_a_context_variable_set_by_one_job_is_not_seen_by_the_next(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    seen: list[int | None] = []

    @task
    async def marks(payload: Any, helpers: Helpers) -> None:
        seen.append(_seen.get())
        _seen.set(helpers.job.id)

    errands.add_jobs(conn, [JobSpec("marks")] * 200)
    asyncio.run(errands.run_once(db, [marks], concurrency=4))
    assert seen == [None] * 200


def test_suspending_jobs_still_run_side_by_side(db: str, conn: psycopg.Connection[Any]) -> None:
    running = 0
    peak = 0

    @task
    async def naps(payload: Any, helpers: Helpers) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    errands.add_jobs(conn, [JobSpec("naps")] * 20)
    asyncio.run(errands.run_once(db, [naps], concurrency=10))
    assert peak == 10
    assert jobs(conn) == []

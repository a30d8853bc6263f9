"""errands._producer on its own, against a real database: the fetch loop that feeds
a worker's slots through its local queue.

The producer is given the real fetch (``errands.get_jobs``) and hand-back
(``errands.worker_return_jobs``); its "slots" are a dict the test fills and empties.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from worker_support import jobs

import errands
from errands import JobSpec, _json
from errands import _queries as q
from errands._local_queue import LocalQueue
from errands._producer import Producer
from errands.job import Job

WORKER = "producer-test"


class Slots:
    """A producer wired to the database behind ``dsn``, with slots the test drives."""

    def __init__(
        self, dsn: str, *, concurrency: int, continuous: bool, poll_interval: float = 60.0,
        size: int = 100, fail_fetches: int = 0,
    ) -> None:  # fmt: skip
        self.dsn = dsn
        self.running: dict[int, Job] = {}
        self.started: list[int] = []
        self.fetches: list[int] = []
        self.returned: list[int] = []
        self.events: list[tuple[str, Any]] = []
        self.fail_fetches = fail_fetches
        self.queue = LocalQueue(concurrency, size)
        self.producer = Producer(
            self.queue, self.running, concurrency=concurrency, continuous=continuous,
            poll_interval=poll_interval, fetch=self.fetch, start=self.start,
            hand_back=self.hand_back, emit=self.emit,
        )  # fmt: skip
        self.on_start: Callable[[Job], None] = lambda job: None

    async def fetch(self, count: int) -> list[Job]:
        self.fetches.append(count)
        if self.fail_fetches:
            self.fail_fetches -= 1
            raise RuntimeError("no fetch this time")
        params = {"worker_id": WORKER, "tasks": ["t"], "count": count, "forbidden": None,
                  "async_commit": False}
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            cur = _json.job_cursor(conn)
            await cur.execute(q.GET_JOBS, params)
            return await cur.fetchall()

    async def hand_back(self, returned: list[Job]) -> None:
        if not returned:
            return
        ids = [job.id for job in returned]
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute(q.WORKER_RETURN_JOBS, {"worker_id": WORKER, "ids": ids})
        self.returned.extend(ids)

    def start(self, job: Job) -> None:
        self.running[job.id] = job
        self.started.append(job.id)
        self.on_start(job)

    def finish(self, job_id: int) -> None:
        """The job's slot frees (its outcome is not written: not the producer's job)."""
        job = self.running.pop(job_id)
        self.queue.record_duration(0.0001)
        self.producer.slot_freed(job.queue_name is not None)

    def emit(self, name: str, **kwargs: Any) -> None:
        self.events.append((name, kwargs))


async def eventually(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_run_once_feeds_every_job_once_in_few_fetches_then_returns(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    ids = {j.id for j in errands.add_jobs(conn, [JobSpec("t")] * 60)}
    slots = Slots(db, concurrency=3, continuous=False)
    # Each job ends on the next loop turn, as a fast task would.
    slots.on_start = lambda job: asyncio.get_running_loop().call_soon(slots.finish, job.id)
    asyncio.run(asyncio.wait_for(slots.producer.run(), 30))
    assert sorted(slots.started) == sorted(ids)
    # Fast jobs: it fetched ahead (more than the 3 free slots) once it knew their speed.
    assert max(slots.fetches) > 3
    assert len(slots.fetches) < 20, slots.fetches
    # The last fetch found nothing: that, with nothing running, ended the loop.
    assert not slots.queue and not slots.running
    rows = jobs(conn)
    assert {r["locked_by"] for r in rows} == {WORKER} and {r["attempts"] for r in rows} == {1}


def test_continuous_waits_for_a_nudge_and_hands_back_on_stop(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    async def main() -> Slots:
        slots = Slots(db, concurrency=2, continuous=True, poll_interval=60.0)
        slots.queue.record_duration(0.0001)  # fast jobs: it fetches ahead
        loop = asyncio.create_task(slots.producer.run())
        await eventually(lambda: slots.fetches, "the first fetch")
        await asyncio.sleep(0.2)
        assert slots.fetches == [2 + 100]  # found nothing; the next poll is a minute away
        errands.add_jobs(conn, [JobSpec("t")] * 10)
        await asyncio.sleep(0.2)
        assert len(slots.fetches) == 1  # no notification, no poll: no fetch
        slots.producer.nudge()
        await eventually(lambda: len(slots.started) == 2, "two jobs in the two slots")
        assert len(slots.queue) == 8  # fetched ahead, waiting for a slot
        slots.finish(slots.started[0])  # a slot frees: the next queued job takes it
        assert len(slots.started) == 3 and len(slots.queue) == 7
        slots.producer.stop()
        await asyncio.wait_for(loop, 5)
        await slots.producer.finish()
        return slots

    slots = asyncio.run(main())
    assert len(slots.returned) == 7
    rows = {r["id"]: r for r in jobs(conn)}
    for job_id in slots.returned:  # unlocked, their attempt given back
        assert (rows[job_id]["locked_by"], rows[job_id]["attempts"]) == (None, 0)
    assert {rows[i]["locked_by"] for i in slots.started} == {WORKER}


def test_a_free_named_queue_is_fetched_from_at_once(db: str, conn: psycopg.Connection[Any]) -> None:
    errands.add_jobs(conn, [JobSpec("t", queue_name="q")] * 3)

    async def main() -> Slots:
        slots = Slots(db, concurrency=5, continuous=True, poll_interval=60.0)
        loop = asyncio.create_task(slots.producer.run())
        await eventually(lambda: len(slots.started) == 1, "the queue's first job")
        await asyncio.sleep(0.1)
        assert len(slots.started) == 1  # one job of a named queue at a time
        # The job's outcome is written (that frees its queue), then its slot frees.
        conn.execute("SELECT errands.worker_complete_jobs(%s, %s)", [WORKER, [slots.started[0]]])
        slots.finish(slots.started[0])
        await eventually(lambda: len(slots.started) == 2, "the queue's next job, unpolled")
        slots.producer.stop()
        await asyncio.wait_for(loop, 5)
        await slots.producer.finish()
        return slots

    asyncio.run(main())


def test_a_failed_fetch_ends_run_once(db: str) -> None:
    slots = Slots(db, concurrency=1, continuous=False, fail_fetches=1)
    with pytest.raises(RuntimeError, match="no fetch this time"):
        asyncio.run(asyncio.wait_for(slots.producer.run(), 10))


def test_a_failed_fetch_is_reported_and_retried_after_the_poll_interval(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    errands.add_job(conn, "t")

    async def main() -> Slots:
        slots = Slots(db, concurrency=1, continuous=True, poll_interval=0.3, fail_fetches=1)
        loop = asyncio.create_task(slots.producer.run())
        await eventually(lambda: slots.started, "the job, after the retry")
        slots.producer.stop()
        await asyncio.wait_for(loop, 5)
        await slots.producer.finish()
        return slots

    started = time.monotonic()
    slots = asyncio.run(main())
    assert time.monotonic() - started >= 0.3
    assert [name for name, _ in slots.events] == ["worker:fetch:error"]
    assert len(slots.fetches) == 2


def test_queued_jobs_that_cannot_start_are_handed_back(
    db: str, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from errands import _local_queue

    monkeypatch.setattr(_local_queue, "LOCAL_QUEUE_TTL", 0.3)
    errands.add_jobs(conn, [JobSpec("t")] * 4)

    async def main() -> Slots:
        slots = Slots(db, concurrency=1, continuous=True, poll_interval=60.0)
        slots.queue.record_duration(0.0001)
        loop = asyncio.create_task(slots.producer.run())
        await eventually(lambda: len(slots.returned) == 3, "the hand-back of 3 queued jobs")
        assert len(slots.started) == 1  # the only slot stayed busy
        assert slots.queue.hold_prefetch and not slots.queue
        slots.producer.stop()
        await asyncio.wait_for(loop, 5)
        return slots

    slots = asyncio.run(main())
    rows = [r for r in jobs(conn) if r["id"] in slots.returned]
    assert [(r["locked_by"], r["attempts"]) for r in rows] == [(None, 0)] * 3

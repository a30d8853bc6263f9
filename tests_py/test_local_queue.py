"""errands._local_queue on its own: prefetch sizing, dispatch order, stale jobs.

Pure bookkeeping (no database): jobs are made with Job.from_row.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import pytest

from errands import _local_queue
from errands._local_queue import PREFETCH_WINDOW, LocalQueue
from errands.job import Job

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def make_jobs(*ids: int) -> list[Job]:
    row: dict[str, Any] = {
        "queue_name": None, "task_identifier": "t", "priority": 0, "run_at": NOW,
        "attempts": 1, "max_attempts": 25, "last_error": None, "created_at": NOW,
        "updated_at": NOW, "key": None, "locked_at": NOW, "locked_by": "w", "revision": 0,
        "flags": None, "payload": {}, "timeout": None, "is_available": False,
        "state": "running",
    }  # fmt: skip
    return [Job.from_row({**row, "id": i}) for i in ids]


def test_an_idle_queue_fetches_for_the_free_slots_only_until_it_knows_durations() -> None:
    queue = LocalQueue(concurrency=4, size=500)
    assert queue.fetch_size(running=0) == 4
    assert queue.fetch_size(running=3) == 1
    assert queue.fetch_size(running=4) == 0


def test_fast_jobs_make_it_fetch_ahead_up_to_its_size() -> None:
    queue = LocalQueue(concurrency=4, size=500)
    queue.record_duration(0.001)  # 1 ms a job: 0.1 s of work is 400 jobs for 4 slots
    assert queue.fetch_size(running=4) == int(4 * PREFETCH_WINDOW / 0.001)
    queue.record_duration(0.002)  # a moving average: 0.0011 s now
    assert queue.fetch_size(running=4) == int(4 * PREFETCH_WINDOW / 0.0011)
    fast = LocalQueue(concurrency=4, size=500)
    fast.record_duration(0.000001)
    assert fast.fetch_size(running=0) == 4 + 500  # capped at size
    assert LocalQueue(concurrency=4, size=0).fetch_size(running=0) == 4  # size 0: no prefetch


def test_a_full_enough_buffer_is_not_topped_up() -> None:
    queue = LocalQueue(concurrency=2, size=100)
    queue.record_duration(0.001)  # target: 200 jobs, capped at 100
    queue.add(make_jobs(*range(1, 91)), time.monotonic())
    assert queue.fetch_size(running=2) == 0  # 10 missing: less than a quarter (25)
    queue.take(70)
    assert queue.fetch_size(running=2) == 80


def test_take_hands_out_jobs_in_fetch_order_and_sets_aside_stale_ones() -> None:
    queue = LocalQueue(concurrency=2, size=10)
    old = time.monotonic() - 60.0
    queue.add(make_jobs(1, 2), old)
    queue.add(make_jobs(3, 4, 5), time.monotonic())
    ready, stale = queue.take(2)
    assert [j.id for j in ready] == [3, 4]
    assert [j.id for j in stale] == [1, 2]
    assert len(queue) == 1
    # After stale jobs: no prefetching (it would fetch them again) until a slot frees.
    queue.record_duration(0.0001)
    assert queue.hold_prefetch
    queue.take(1)
    assert queue.fetch_size(running=0) == 2
    queue.hold_prefetch = False  # what a freed slot does (the producer's slot_freed)
    assert queue.fetch_size(running=0) == 2 + 10


def test_drain_empties_the_queue_and_holds_prefetching() -> None:
    queue = LocalQueue(concurrency=1, size=10)
    queue.add(make_jobs(7, 8), time.monotonic())
    assert [j.id for j in queue.drain()] == [7, 8]
    assert not queue and queue.hold_prefetch


def test_ttl_is_bounded_by_the_limit_the_worker_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LocalQueue(1, 10).ttl == _local_queue.LOCAL_QUEUE_TTL
    assert LocalQueue(1, 10, ttl_limit=2.0).ttl == 2.0
    monkeypatch.setattr(_local_queue, "LOCAL_QUEUE_TTL", 0.5)
    assert LocalQueue(1, 10, ttl_limit=2.0).ttl == 0.5
    queue = LocalQueue(1, 10)
    queue.add(make_jobs(1), time.monotonic())
    assert queue.expires_at() == pytest.approx(time.monotonic() + 0.5, abs=0.1)

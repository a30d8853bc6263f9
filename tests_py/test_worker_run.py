"""Running jobs: success, failure and retry, scheduling, flags, batch jobs, helpers, events."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from worker_support import db_now, job, jobs

import errands
from errands import Event, Events, Helpers, task

E = 2.718281828


def run_once(db: str, tasks: Any, **options: Any) -> None:
    asyncio.run(errands.run_once(db, tasks, **options))


def test_runs_sync_and_async_tasks_and_deletes_jobs(db: str, conn: psycopg.Connection[Any]) -> None:
    seen: list[tuple[str, Any, int, str]] = []

    @task
    async def async_task(payload: Any, helpers: Helpers) -> None:
        seen.append(("async", payload, helpers.job.attempts, threading.current_thread().name))

    @task("sync.task")
    def sync_task(payload: Any, helpers: Helpers) -> None:
        seen.append(("sync", payload, helpers.job.attempts, threading.current_thread().name))

    errands.add_job(conn, "async_task", {"n": 1})
    errands.add_job(conn, "sync.task", {"n": 2}, queue_name="q1")
    errands.add_job(conn, "async_task")
    run_once(db, [async_task, sync_task])

    assert sorted((s[:3] for s in seen), key=repr) == [
        ("async", {"n": 1}, 1),
        ("async", {}, 1),
        ("sync", {"n": 2}, 1),
    ]
    threads = {kind: name for kind, _, _, name in seen}
    assert threads["async"] == "MainThread"
    assert threads["sync"].startswith("errands-task")
    assert jobs(conn) == []
    # The named queue was unlocked by the completion.
    assert conn.execute("SELECT locked_by FROM errands._queues").fetchall() == [(None,)]


def test_failure_is_retried_with_backoff(db: str, conn: psycopg.Connection[Any]) -> None:
    calls: list[int] = []

    @task
    def flaky(payload: Any, helpers: Helpers) -> None:
        calls.append(helpers.job.attempts)
        raise ValueError(f"try {helpers.job.attempts}")

    added = errands.add_job(conn, "flaky", {"keep": "me"}, queue_name="q")
    before = db_now(conn)
    run_once(db, [flaky])
    row = job(conn, added.id)
    assert row is not None
    assert (row["attempts"], row["last_error"], row["locked_by"]) == (1, "ValueError: try 1", None)
    assert row["payload"] == {"keep": "me"}
    assert timedelta(seconds=E) <= row["run_at"] - before < timedelta(seconds=E + 2)

    run_once(db, [flaky])  # not due yet: nothing runs
    assert calls == [1]

    with errands.SyncWorkerUtils(db) as utils:
        utils.reschedule_jobs([added.id], run_at=datetime.now(timezone.utc))
    before = db_now(conn)
    run_once(db, [flaky])
    row = job(conn, added.id)
    assert row is not None and calls == [1, 2]
    assert (row["attempts"], row["last_error"]) == (2, "ValueError: try 2")
    assert timedelta(seconds=E**2) <= row["run_at"] - before < timedelta(seconds=E**2 + 2)


def test_future_jobs_wait_until_due(db: str, conn: psycopg.Connection[Any]) -> None:
    ran: list[int] = []

    @task
    async def later(payload: Any, helpers: Helpers) -> None:
        ran.append(helpers.job.id)

    future = errands.add_job(conn, "later", run_at=datetime.now(timezone.utc) + timedelta(hours=1))
    run_once(db, [later])
    assert ran == [] and len(jobs(conn)) == 1

    with errands.SyncWorkerUtils(db) as utils:
        utils.reschedule_jobs([future.id], run_at=datetime.now(timezone.utc))
    run_once(db, [later])
    assert ran == [future.id] and jobs(conn) == []


def test_unknown_tasks_are_left_alone(db: str, conn: psycopg.Connection[Any]) -> None:
    @task
    async def known(payload: Any, helpers: Helpers) -> None:
        pass

    other = errands.add_job(conn, "someone_elses")
    errands.add_job(conn, "known")
    run_once(db, [known])
    assert [j["id"] for j in jobs(conn)] == [other.id]
    assert jobs(conn)[0]["attempts"] == 0


@pytest.mark.parametrize("kind", ["list", "sync function", "async function"])
def test_forbidden_flags(db: str, conn: psycopg.Connection[Any], kind: str) -> None:
    ran: list[Any] = []
    calls: list[int] = []

    @task
    async def flagged(payload: Any, helpers: Helpers) -> None:
        ran.append(payload)

    def sync_flags() -> list[str]:
        calls.append(1)
        return ["a", "b"]

    async def async_flags() -> list[str]:
        calls.append(1)
        return ["a", "b"]

    forbidden: Any = {
        "list": ["a", "b"], "sync function": sync_flags, "async function": async_flags,
    }  # fmt: skip
    blocked = errands.add_job(conn, "flagged", "blocked", flags=["b", "c"])
    errands.add_job(conn, "flagged", "free", flags=["c"])
    errands.add_job(conn, "flagged", "none")
    run_once(db, [flagged], forbidden_flags=forbidden[kind])

    assert sorted(ran) == ["free", "none"]
    (row,) = jobs(conn)
    assert (row["id"], row["attempts"]) == (blocked.id, 0)
    if kind != "list":
        assert calls, "the flags function is called before fetching"

    run_once(db, [flagged], forbidden_flags=lambda: None)
    assert sorted(ran) == ["blocked", "free", "none"]


def test_batch_jobs_partial_failure(db: str, conn: psycopg.Connection[Any]) -> None:
    async def boom(n: int) -> None:
        raise RuntimeError(f"item {n}")

    async def fine() -> str:
        return "ok"

    @task
    async def async_batch(payload: list[int], helpers: Helpers) -> list[Any]:
        return [ValueError("item 1"), fine(), boom(3), None]

    @task
    def sync_batch(payload: list[int], helpers: Helpers) -> list[Any]:
        return [None, KeyError("b")]

    @task
    def all_good(payload: list[int], helpers: Helpers) -> list[Any]:
        return [None] * len(payload)

    a = errands.add_job(conn, "async_batch", [1, 2, 3, 4])
    s = errands.add_job(conn, "sync_batch", ["a", "b"])
    errands.add_job(conn, "all_good", [1, 2])
    run_once(db, [async_batch, sync_batch, all_good])

    rows = {r["id"]: r for r in jobs(conn)}
    assert set(rows) == {a.id, s.id}
    assert rows[a.id]["payload"] == [1, 3]
    assert rows[a.id]["last_error"] == "Batch failures:\nValueError: item 1\nRuntimeError: item 3"
    assert rows[a.id]["attempts"] == 1
    assert rows[s.id]["payload"] == ["b"]
    assert rows[s.id]["last_error"] == "Batch failures:\nKeyError: 'b'"


def test_events_in_order(db: str, conn: psycopg.Connection[Any]) -> None:
    events = Events()
    seen: list[tuple[str, int | None]] = []
    async_seen: list[str] = []

    @events.on("*")
    def record(event: Event) -> None:
        seen.append((event.name, event.job.id if event.job else None))

    async def async_callback(event: Event) -> None:
        await asyncio.sleep(0)
        async_seen.append(event.name)

    def broken(event: Event) -> None:
        raise RuntimeError("a broken callback must not stop the worker")

    events.on("job:complete", async_callback)
    events.on("job:start", broken)

    @task
    async def ok(payload: Any, helpers: Helpers) -> None:
        pass

    @task
    async def bad(payload: Any, helpers: Helpers) -> None:
        raise ValueError("bad")

    good = errands.add_job(conn, "ok")
    run_once(db, [ok, bad], events=events)
    failing = errands.add_job(conn, "bad", max_attempts=1)
    run_once(db, [ok, bad], events=events)

    job_events = [(name, jid) for name, jid in seen if name.startswith("job:")]
    assert job_events == [
        ("job:start", good.id),
        ("job:success", good.id),
        ("job:complete", good.id),
        ("job:start", failing.id),
        ("job:error", failing.id),
        ("job:failed", failing.id),
        ("job:complete", failing.id),
    ]
    names = [name for name, _ in seen]
    assert names[0] == "worker:sweep" and names[1] == "worker:start"
    assert names[-1] == "worker:stop"
    assert async_seen == ["job:complete", "job:complete"]
    (row,) = jobs(conn)
    assert row["attempts"] == row["max_attempts"] == 1


def test_helpers(db: str, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="errands")
    results: dict[str, Any] = {}

    @task
    async def parent(payload: Any, helpers: Helpers) -> None:
        helpers.logger.info("hello from the parent")
        async with helpers.connection() as c:
            cur = await c.execute("SELECT count(*) FROM errands.jobs")
            results["async_count"] = (await cur.fetchone() or [None])[0]
        child = await helpers.add_job("child", {"from": helpers.job.id})
        await helpers.add_jobs([errands.JobSpec("sync_child", {"n": 1})])
        results["child"] = child.id
        results["abort_set"] = helpers.abort.is_set()

    @task
    async def child(payload: Any, helpers: Helpers) -> None:
        results["child_payload"] = payload

    @task
    def sync_child(payload: Any, helpers: Helpers) -> None:
        with helpers.sync_connection() as c:
            results["sync_one"] = c.execute("SELECT 1").fetchone()
        helpers.add_job_sync("child", {"from": "sync"}, job_key="k")
        helpers.add_jobs_sync([{"identifier": "child", "payload": {"from": "sync2"}}])

    p = errands.add_job(conn, "parent")
    run_once(db, [parent, child, sync_child])

    assert results["async_count"] == 1
    assert results["abort_set"] is False
    assert results["sync_one"] == (1,)
    assert results["child_payload"] in ({"from": "sync"}, {"from": "sync2"}, {"from": p.id})
    assert jobs(conn) == [], "jobs added by tasks run in the same run_once"
    (record,) = [r for r in caplog.records if "hello from the parent" in r.getMessage()]
    assert record.getMessage() == f"[parent #{p.id}] hello from the parent"
    assert (record.job_id, record.task_identifier, record.attempt) == (p.id, "parent", 1)  # type: ignore[attr-defined]


def test_lost_lock_is_reported(db: str, conn: psycopg.Connection[Any]) -> None:
    events = Events()
    lost: list[int] = []
    events.on("job:lock_lost", lambda e: lost.append(e.job.id if e.job else 0))

    @task
    async def orphan(payload: Any, helpers: Helpers) -> None:
        async with helpers.connection() as c:
            await c.execute("SELECT errands.force_unlock_workers(%s)", [[helpers.worker_id]])

    j = errands.add_job(conn, "orphan", max_attempts=1)
    run_once(db, [orphan], events=events, concurrency=1)
    assert lost == [j.id]
    # The worker that lost the lock did not complete the job.
    (row,) = jobs(conn)
    assert (row["id"], row["locked_by"], row["attempts"]) == (j.id, None, 1)


def test_bad_crontab_fails_the_start(db: str) -> None:  # cron itself: test_cron.py
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="crontab line 1"):
        asyncio.run(errands.run(db, {"task": lambda payload, helpers: None}, crontab="* * * * *"))

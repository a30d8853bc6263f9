"""Enqueueing on the caller's connection, WorkerUtils, and errands.testing."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from worker_support import job, jobs

import errands
from errands import Helpers, JobOptions, JobSpec, task
from errands.testing import errands_run_once, run_task_list_once, run_task_list_once_async

__all__ = ["errands_run_once"]  # the fixture, used below


class Rollback(Exception):
    pass


def test_job_options_are_public_and_typed_for_every_add_job(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """errands.JobOptions types a set of options kept apart from the call site."""
    from errands import enqueue

    assert JobOptions is enqueue.JobOptions and "JobOptions" in errands.__all__
    urgent: JobOptions = {"queue_name": "q-urgent", "priority": -5, "max_attempts": 2}
    added = errands.add_job(conn, "t", None, **urgent)
    assert (added.queue_name, added.priority, added.max_attempts) == ("q-urgent", -5, 2)
    with errands.SyncWorkerUtils(db) as utils:
        again = utils.add_job("t", None, **urgent)
    assert (again.queue_name, again.priority, again.max_attempts) == ("q-urgent", -5, 2)


def test_add_job_follows_the_callers_transaction(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(Rollback), conn.transaction():
        added = errands.add_job(conn, "t", {"a": 1})
        assert added.id and added.payload == {"a": 1}
        assert len(jobs(conn)) == 1
        raise Rollback
    assert jobs(conn) == []

    with conn.transaction():
        added = errands.add_job(
            conn, "t", [1], queue_name="q", max_attempts=3, job_key="k", priority=-2,
            flags=["x", "y"],
        )  # fmt: skip
    assert (added.task_identifier, added.queue_name, added.max_attempts) == ("t", "q", 3)
    assert (added.key, added.priority, added.flags) == ("k", -2, frozenset({"x", "y"}))
    assert added.attempts == 0 and added.locked_by is None
    assert [j["id"] for j in jobs(conn)] == [added.id]


#: Every job option but job_key, each with a value other than its default.
ALL_OPTIONS: dict[str, Any] = {
    "queue_name": "q-all", "max_attempts": 7, "priority": 4, "flags": ("f1", "f2"),
    "job_key_mode": "preserve_run_at", "timeout": 12.5,
}  # fmt: skip


def test_every_add_job_takes_every_option(db: str, conn: psycopg.Connection[Any]) -> None:
    """errands.add_job(_async), WorkerUtils, SyncWorkerUtils and Helpers: one set of
    keyword options, each passed through to errands.add_job."""
    run_at = datetime.now(timezone.utc) + timedelta(hours=1)
    added: dict[str, errands.Job] = {}

    def options(key: str) -> dict[str, Any]:
        return {**ALL_OPTIONS, "run_at": run_at, "job_key": key}

    added["add_job"] = errands.add_job(conn, "t", {"p": 1}, **options("add_job"))
    with errands.SyncWorkerUtils(db) as sync_utils:
        added["sync_utils"] = sync_utils.add_job("t", {"p": 1}, **options("sync_utils"))

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as aconn:
            added["add_job_async"] = await errands.add_job_async(
                aconn, "t", {"p": 1}, **options("add_job_async")
            )
        async with errands.WorkerUtils(db) as utils:
            added["utils"] = await utils.add_job("t", {"p": 1}, **options("utils"))

    asyncio.run(main())

    @task
    def adds_sync(payload: Any, helpers: Helpers) -> None:
        added["helpers_sync"] = helpers.add_job_sync("t", {"p": 1}, **options("helpers_sync"))

    @task
    async def adds_async(payload: Any, helpers: Helpers) -> None:
        added["helpers"] = await helpers.add_job("t", {"p": 1}, **options("helpers"))

    errands.add_job(conn, "adds_sync")
    errands.add_job(conn, "adds_async")
    run_task_list_once(conn, [adds_sync, adds_async])

    assert len(added) == 6
    for key, new in added.items():
        assert (new.key, new.payload, new.run_at) == (key, {"p": 1}, run_at)
        assert (new.queue_name, new.max_attempts, new.priority) == ("q-all", 7, 4)
        assert (new.flags, new.timeout) == (frozenset({"f1", "f2"}), 12.5)
    # job_key_mode preserve_run_at: a second add with the key keeps the job's run_at.
    again = errands.add_job(conn, "t", **{**options("add_job"), "run_at": None})
    assert (again.id, again.run_at) == (added["add_job"].id, run_at)
    assert sorted(j["key"] for j in jobs(conn)) == sorted(added)


def test_a_misspelt_job_option_is_a_type_error(db: str, conn: psycopg.Connection[Any]) -> None:
    """The options are keyword arguments checked by name, as a signature would: a typo
    raises TypeError (naming it) before anything is sent."""
    with pytest.raises(TypeError, match="'quue_name'"):
        errands.add_job(conn, "t", quue_name="q")  # type: ignore[call-arg]
    with errands.SyncWorkerUtils(db) as utils, pytest.raises(TypeError, match="'retries'"):
        utils.add_job("t", retries=3)  # type: ignore[call-arg]

    async def main() -> None:
        async with errands.WorkerUtils(db) as utils:
            with pytest.raises(TypeError, match="'job_keymode'"):
                await utils.add_job("t", job_keymode="replace")  # type: ignore[call-arg]

    asyncio.run(main())
    assert jobs(conn) == []


def test_add_jobs_on_the_callers_connection(conn: psycopg.Connection[Any]) -> None:
    run_at = datetime.now(timezone.utc) + timedelta(minutes=5)
    added = errands.add_jobs(
        conn,
        [
            JobSpec("a", {"n": 1}, run_at=run_at, flags=["f"]),
            {"identifier": "b", "payload": [1, 2], "queue_name": "q", "priority": 3},
            JobSpec("c"),
        ],
    )
    assert [j.task_identifier for j in added] == ["a", "b", "c"]
    assert added[0].run_at == run_at and added[0].flags == frozenset({"f"})
    assert (added[1].payload, added[1].queue_name, added[1].priority) == ([1, 2], "q", 3)
    assert added[2].payload == {}


def test_async_add_job_follows_the_callers_transaction(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(db) as aconn:
            await errands.add_job_async(aconn, "t", {"rolled": "back"})
            await errands.add_jobs_async(aconn, [JobSpec("t")])
            await aconn.rollback()
            kept = await errands.add_job_async(aconn, "t", {"kept": True})
            await aconn.commit()
            assert [j["id"] for j in jobs(conn)] == [kept.id]

    asyncio.run(main())


def test_worker_utils(db: str, conn: psycopg.Connection[Any]) -> None:
    async def main() -> None:
        async with errands.WorkerUtils(db) as utils:
            await utils.install()  # idempotent
            a = await utils.add_job("t", {"n": 1}, job_key="key-a")
            b, c, d = await utils.add_jobs([JobSpec("t"), JobSpec("t"), {"identifier": "u"}])
            assert (await utils.add_job("t", {"n": 2}, job_key="key-a")).id == a.id

            removed = await utils.remove_job("key-a")
            assert removed is not None and removed.id == a.id
            assert await utils.remove_job("no-such-key") is None

            assert [j.id for j in await utils.complete_jobs([b.id])] == [b.id]
            (failed,) = await utils.permanently_fail_jobs([c.id], "gave up")
            assert (failed.attempts, failed.last_error) == (failed.max_attempts, "gave up")

            when = datetime.now(timezone.utc) + timedelta(hours=2)
            (moved,) = await utils.reschedule_jobs([d.id], run_at=when, priority=5, attempts=2)
            assert (moved.run_at, moved.priority, moved.attempts) == (when, 5, 2)

            # A job locked by a (dead) worker is released by force_unlock_workers.
            await utils.reschedule_jobs([d.id], run_at=datetime.now(timezone.utc))
            conn.execute("SELECT errands.get_jobs('dead-worker', '{u}', 1)")
            assert job(conn, d.id)["locked_by"] == "dead-worker"  # type: ignore[index]
            await utils.force_unlock_workers(["dead-worker"])
            assert job(conn, d.id)["locked_by"] is None  # type: ignore[index]

            deleted = await utils.cleanup(
                ["DELETE_PERMAFAILED_JOBS", "GC_JOB_QUEUES", "GC_TASK_IDENTIFIERS"],
                task_identifiers_to_keep=["t"],
            )
            assert deleted == {
                "DELETE_PERMAFAILED_JOBS": 1, "GC_JOB_QUEUES": 0, "GC_TASK_IDENTIFIERS": 0,
            }  # fmt: skip
            assert [j["id"] for j in jobs(conn)] == [d.id]

    asyncio.run(main())


def test_sync_worker_utils(db: str, conn: psycopg.Connection[Any]) -> None:
    with errands.SyncWorkerUtils(db) as utils:
        utils.install()
        a = utils.add_job("t", job_key="k")
        (b,) = utils.add_jobs([JobSpec("t", queue_name="q")])
        assert utils.remove_job("k") is not None
        (failed,) = utils.permanently_fail_jobs([b.id])
        assert failed.last_error == "Manually marked as failed"
        (resched,) = utils.reschedule_jobs([b.id], attempts=0)
        assert resched.attempts == 0
        assert [j.id for j in utils.complete_jobs([b.id])] == [b.id]
        utils.force_unlock_workers(["nobody"])
        assert utils.cleanup() == {"GC_JOB_QUEUES": 1}
        assert job(conn, a.id) is None and jobs(conn) == []


def test_run_task_list_once(conn: psycopg.Connection[Any]) -> None:
    order: list[str] = []

    @task
    def step(payload: Any, helpers: Helpers) -> None:
        order.append(payload["name"])
        if payload["name"] == "b":
            helpers.add_job_sync("step", {"name": "added"}, queue_name="serial")

    for name in ("a", "b", "c"):
        errands.add_job(conn, "step", {"name": name}, queue_name="serial")
    run_task_list_once(conn, [step])
    assert order == ["a", "b", "c", "added"]
    assert jobs(conn) == []


def test_run_task_list_once_async_uses_the_given_connection(db: str) -> None:
    ran: list[int] = []

    @task
    async def t(payload: Any, helpers: Helpers) -> None:
        ran.append(helpers.job.id)

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(db) as aconn:
            # Not committed: only this connection sees the job.
            added = await errands.add_job_async(aconn, "t")
            await run_task_list_once_async(aconn, [t])
            assert ran == [added.id]
            cur = await aconn.execute("SELECT count(*) FROM errands.jobs")
            assert await cur.fetchone() == (0,)
            await aconn.rollback()

    asyncio.run(main())


@pytest.fixture
def errands_conninfo(db: str) -> str:
    return db


def test_errands_run_once_fixture(errands_run_once: Any, conn: psycopg.Connection[Any]) -> None:
    ran: list[Any] = []

    @task
    async def fixture_task(payload: Any, helpers: Helpers) -> None:
        ran.append(payload)

    errands.add_job(conn, "fixture_task", {"via": "fixture"})
    errands_run_once([fixture_task])
    assert ran == [{"via": "fixture"}]

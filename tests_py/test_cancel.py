"""Cancelling jobs end to end with a real worker: ``errands.cancel_jobs`` of a
running async task (cancelled) and sync task (its ``helpers.abort`` set), of
waiting jobs, ``raise errands.Cancel(reason)`` from inside a task, and the
``errands cancel`` command."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner
from worker_support import jobs, wait_until

import errands
from errands import Cancel, Helpers, task
from errands.cli import app


def finished(conn: psycopg.Connection[Any], job_id: int) -> tuple[str, str | None] | None:
    row = conn.execute(
        "SELECT state, last_error FROM errands.finished_jobs WHERE id = %s", [job_id]
    ).fetchone()
    return (row[0], row[1]) if row else None


def cancel(conn: psycopg.Connection[Any], *ids: int) -> list[tuple[int, str]]:
    rows = conn.execute("SELECT * FROM errands.cancel_jobs(%s::bigint[])", [list(ids)]).fetchall()
    return [(r[0], r[1]) for r in rows]


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_a_running_task_cancelled_mid_run_ends_cancelled_within_a_second(
    db: str, conn: psycopg.Connection[Any], kind: str
) -> None:
    conn.execute("SELECT errands.set_retention('1 hour')")
    starts: list[int] = []  # job ids, one per try
    seen: dict[int, str] = {}  # job id -> how the try ended
    lock = threading.Lock()

    def started(helpers: Helpers) -> None:
        with lock:
            starts.append(helpers.job.id)

    if kind == "async":

        @task("slow")
        async def slow_async(payload: Any, helpers: Helpers) -> str:
            started(helpers)
            try:
                await asyncio.sleep(payload["seconds"])
            except asyncio.CancelledError:
                seen[helpers.job.id] = "CancelledError"
                raise
            seen[helpers.job.id] = "finished"
            return "done"

        tasks = [slow_async]
    else:

        @task("slow")
        def slow_sync(payload: Any, helpers: Helpers) -> str:
            started(helpers)
            aborted = helpers.abort.wait(payload["seconds"])
            seen[helpers.job.id] = "aborted" if aborted else "finished"
            return "done"

        tasks = [slow_sync]

    victim = errands.add_job(conn, "slow", {"seconds": 10}).id
    # A job running alongside: its own abort signal is not set by the cancel.
    bystander = errands.add_job(conn, "slow", {"seconds": 2}).id

    async def main() -> float:
        runner = await errands.run(db, tasks, poll_interval=0.1, concurrency=2, log_jobs=False)
        try:
            await asyncio.to_thread(wait_until, lambda: len(starts) == 2, 10, "both jobs start")
            began = time.monotonic()
            assert cancel(conn, victim) == [(victim, "cancel_requested")]
            await asyncio.to_thread(wait_until, lambda: finished(conn, victim), 10, "cancelled")
            elapsed = time.monotonic() - began
            await asyncio.to_thread(wait_until, lambda: finished(conn, bystander), 10, "done")
            await asyncio.sleep(0.5)  # time for a wrong second try to start
            return elapsed
        finally:
            await runner.stop()

    elapsed = asyncio.run(main())
    assert elapsed < 1.5, f"the cancellation took {elapsed:.2f} s"
    assert finished(conn, victim) == (
        "cancelled",
        "errands: cancelled by cancel_jobs while running",
    )
    assert seen[victim] == ("CancelledError" if kind == "async" else "aborted")
    assert finished(conn, bystander) == ("completed", None)
    assert seen[bystander] == "finished"
    assert sorted(starts) == sorted([victim, bystander])  # the victim never ran again
    assert jobs(conn) == []


def test_cancel_from_inside_a_task_ends_it_cancelled_with_the_reason(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("SELECT errands.set_retention('1 hour')")
    tries: list[int] = []

    @task("quit")
    def quit_sync(payload: Any, helpers: Helpers) -> None:
        tries.append(helpers.job.id)
        raise Cancel("the order was withdrawn")

    @task("quit_async")
    async def quit_async(payload: Any, helpers: Helpers) -> None:
        tries.append(helpers.job.id)
        raise Cancel("nothing to do")

    a = errands.add_job(conn, "quit", queue_name="q1").id
    b = errands.add_job(conn, "quit_async").id
    after = errands.add_job(conn, "quit", queue_name="q1").id  # the queue is unlocked
    asyncio.run(errands.run_once(db, [quit_sync, quit_async], log_jobs=False))
    assert finished(conn, a) == ("cancelled", "the order was withdrawn")
    assert finished(conn, b) == ("cancelled", "nothing to do")
    assert finished(conn, after) == ("cancelled", "the order was withdrawn")
    assert sorted(tries) == sorted([a, b, after])  # each ran once, never retried


def test_cancel_jobs_from_python_reports_each_outcome(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    pending = errands.add_job(conn, "p").id
    with errands.SyncWorkerUtils(db) as utils:
        assert utils.cancel_jobs([pending, 987654321]) == {
            pending: "cancelled",
            987654321: "unknown",
        }
        assert utils.cancel_jobs([pending]) == {pending: "unknown"}  # retention 0: not kept
    assert jobs(conn) == []


def cli(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=input)


def test_cli_cancel_by_id_and_by_filter(db: str, conn: psycopg.Connection[Any]) -> None:
    one = errands.add_job(conn, "c1").id
    result = cli("cancel", str(one), "-c", db)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"cancelled: 1 ({one})\n"
    result = cli("cancel", "987654321", "-c", db)
    assert result.exit_code == 1 and "unknown: 1 (987654321)" in result.stdout

    keep = errands.add_job(conn, "c2", queue_name="other").id
    mine = [errands.add_job(conn, "c2", queue_name="mine").id for _ in range(2)]
    later = errands.add_job(conn, "c2", queue_name="mine", run_at=None).id
    conn.execute(
        "UPDATE errands._jobs SET run_at = now() + interval '1 day' WHERE id = %s", [later]
    )
    # Declined: nothing changes.
    result = cli(
        "cancel", "--task", "c2", "--queue", "mine", "--state", "pending", "-c", db, input="n\n"
    )
    assert result.exit_code == 1
    assert "cancel 2 jobs of task 'c2'?" in result.stdout
    assert {j["id"] for j in jobs(conn)} == {keep, later, *mine}
    result = cli(
        "cancel", "--task", "c2", "--queue", "mine", "--state", "pending", "--yes", "-c", db
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"cancelled: 2 ({mine[0]}, {mine[1]})\n"
    assert {j["id"] for j in jobs(conn)} == {keep, later}
    result = cli("cancel", "--task", "nothing", "-c", db)
    assert result.exit_code == 0 and result.stdout == "no matching job\n"
    result = cli("cancel", "1", "--task", "c2", "-c", db)
    assert result.exit_code == 1 and "give job ids or --task TASK" in result.stderr


@pytest.mark.parametrize("how", ["abort_replace", "poll"])
def test_a_running_job_cancelled_by_abort_replace_or_heard_by_polling(
    db: str, conn: psycopg.Connection[Any], how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """abort_replace requests the cancellation of the running keyed job and its
    replacement runs; a worker without LISTEN (PgBouncer mode) hears it by polling."""
    conn.execute("SELECT errands.set_retention('1 hour')")
    monkeypatch.setattr("errands._cancel_watch.POLL_INTERVAL", 0.2)
    runs: list[tuple[int, Any]] = []

    @task("keyed")
    async def keyed(payload: Any, helpers: Helpers) -> None:
        runs.append((helpers.job.id, payload["v"]))
        await asyncio.sleep(payload["seconds"])

    old = errands.add_job(conn, "keyed", {"v": 1, "seconds": 10}, job_key="k").id

    async def main() -> None:
        listen = how != "poll"
        runner = await errands.run(db, [keyed], poll_interval=0.1, listen=listen, log_jobs=False)
        try:
            await asyncio.to_thread(wait_until, lambda: runs, 10, "the job starts")
            if how == "poll":
                cancel(conn, old)
            else:
                errands.add_job(
                    conn, "keyed", {"v": 2, "seconds": 0}, job_key="k", job_key_mode="abort_replace"
                )
            await asyncio.to_thread(wait_until, lambda: finished(conn, old), 5, "cancelled")
            if how != "poll":
                await asyncio.to_thread(wait_until, lambda: jobs(conn) == [], 5, "replacement")
        finally:
            await runner.stop()

    asyncio.run(main())
    state, reason = finished(conn, old) or ("", "")
    assert state == "cancelled"
    if how == "poll":
        assert [r[0] for r in runs] == [old]
    else:
        assert reason == "errands: cancelled by abort_replace of job key k"
        assert [r[1] for r in runs] == [1, 2]  # the replacement ran once


def test_a_job_cancelled_while_it_waits_in_the_local_queue_never_runs(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """A fetched job is locked (SQL: running) before it starts: a cancellation
    heard then ends it cancelled when it reaches a slot, without running it."""
    conn.execute("SELECT errands.set_retention('1 hour')")
    runs: list[int] = []

    @task("busy")
    async def busy(payload: Any, helpers: Helpers) -> None:
        runs.append(helpers.job.id)
        await asyncio.sleep(payload["seconds"])

    # Quick jobs first: the worker prefetches only once it knows jobs are short.
    quick = [errands.add_job(conn, "busy", {"seconds": 0}).id for _ in range(3)]
    first = errands.add_job(conn, "busy", {"seconds": 1.5}).id
    queued = errands.add_job(conn, "busy", {"seconds": 0}).id

    async def main() -> None:
        runner = await errands.run(
            db, [busy], concurrency=1, local_queue_size=1, poll_interval=0.1, log_jobs=False
        )
        try:
            await asyncio.to_thread(wait_until, lambda: first in runs, 10, "the long job starts")
            await asyncio.to_thread(
                wait_until,
                lambda: conn.execute(
                    "SELECT 1 FROM errands._jobs WHERE id = %s AND locked_by IS NOT NULL", [queued]
                ).fetchone(),
                1.0,
                "the next job is fetched into the local queue",
            )
            assert cancel(conn, queued) == [(queued, "cancel_requested")]
            await asyncio.to_thread(wait_until, lambda: finished(conn, queued), 10, "cancelled")
            await asyncio.to_thread(wait_until, lambda: finished(conn, first), 10, "completed")
        finally:
            await runner.stop()

    asyncio.run(main())
    assert runs == [*quick, first]
    assert finished(conn, queued) == (
        "cancelled",
        "errands: cancelled by cancel_jobs while running",
    )
    assert finished(conn, first) == ("completed", None)


@pytest.mark.parametrize(
    "report",
    [
        "SELECT errands.force_unlock_workers(ARRAY['w-race'])",
        "SELECT errands.unregister_worker('w-race')",
        "SELECT errands.worker_fail_jobs('w-race', ARRAY[%(id)s::bigint], ARRAY['boom'])",
        "SELECT errands.worker_snooze_jobs('w-race', ARRAY[%(id)s::bigint], ARRAY[interval '0'])",
        "SELECT errands.worker_return_jobs('w-race', ARRAY[%(id)s::bigint])",
        "SELECT errands.worker_complete_jobs('w-race', ARRAY[%(id)s::bigint])",
    ],
    ids=["force_unlock", "rescue", "fail", "snooze", "return", "complete"],
)
def test_a_cancellation_committing_while_the_job_is_released_still_wins(
    db: str, conn: psycopg.Connection[Any], report: str
) -> None:
    """The release (rescue, fail, snooze, return, complete) waits for the row the
    uncommitted cancel_jobs holds; once it commits, the job ends cancelled and is
    not made runnable with its request pending (it would run again)."""
    conn.execute("SELECT errands.set_retention('1 hour')")
    job_id = errands.add_job(conn, "race").id
    conn.execute("SELECT errands.get_jobs('w-race', ARRAY['race'])")
    with psycopg.connect(db) as canceller:
        assert cancel(canceller, job_id) == [(job_id, "cancel_requested")]  # not committed yet
        released = threading.Thread(target=lambda: conn.execute(report, {"id": job_id}))
        released.start()
        time.sleep(0.3)  # the release now waits for the job's row
        assert released.is_alive()
        canceller.commit()
        released.join(10)
    assert finished(conn, job_id) == (
        "cancelled",
        "errands: cancelled by cancel_jobs while running",
    )
    assert jobs(conn) == []

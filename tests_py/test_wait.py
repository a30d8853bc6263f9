"""Waiting for a job end to end: a waiter in another process (the `errands wait`
command) gets the result of a job a real worker runs; a job finished before the
call is found; a completion racing the waiter's registration still keeps the row
and notifies; timeout, unknown id, failed and cancelled jobs; the CLI's exit
codes and --json; the NOTIFY names watched jobs only."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from worker_support import wait_until

import errands
from errands import Helpers, SyncWorkerUtils, WorkerUtils, task

ERRANDS = str(Path(sys.executable).with_name("errands"))


@task
async def answer(payload: Any, helpers: Helpers) -> Any:
    return {"answer": payload["n"] * 2}


@task
async def broken(payload: Any, helpers: Helpers) -> Any:
    raise RuntimeError("broken on purpose")


def run_once(db: str) -> None:
    asyncio.run(errands.run_once(db, [answer, broken]))


def add(conn: psycopg.Connection[Any], identifier: str, payload: str = "{}", **kw: Any) -> int:
    extra = "".join(f", {k} := %({k})s" for k in kw)
    params = {"i": identifier, "p": payload, **kw}
    query = f"SELECT id FROM errands.add_job(%(i)s, %(p)s::json{extra})"
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def watched(conn: psycopg.Connection[Any], job_id: int) -> bool:
    row = conn.execute("SELECT watched FROM errands._jobs WHERE id = %s", [job_id]).fetchone()
    return bool(row and row[0])


def wait_cli(db: str, *args: str) -> subprocess.Popen[str]:
    command = [ERRANDS, "wait", *args, "-c", db]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_waiter_in_another_process_gets_the_result_a_worker_stores(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    job_id = add(conn, "answer", '{"n": 21}')
    waiter = wait_cli(db, str(job_id), "--json", "--timeout", "60")
    wait_until(lambda: watched(conn, job_id), timeout=30, what="the waiter's watch")
    started = time.monotonic()
    run_once(db)  # a real worker, retention 0 (the default): the watch keeps the row
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    # Woken by the notification, not the 10 s poll.
    assert time.monotonic() - started < 8
    row = json.loads(out)
    assert (row["id"], row["state"], row["result"]) == (job_id, "completed", {"answer": 42})


def test_a_job_finished_before_the_call_is_found(db: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT errands.set_retention('1 hour')")
    job_id = add(conn, "answer", '{"n": 5}')
    run_once(db)
    with SyncWorkerUtils(db) as utils:
        finished = utils.wait_for_job(job_id, timeout=0)
    assert (finished.state, finished.result) == ("completed", {"answer": 10})


def test_a_job_finishing_after_the_check_wakes_the_waiter(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """The waiter read `pending`; the completion comes after: only the notification
    can wake it before the (60 s) poll."""
    job_id = add(conn, "answer", '{"n": 1}')

    async def main() -> errands.FinishedJob:
        async with WorkerUtils(db) as utils:
            waiting = asyncio.create_task(utils.wait_for_job(job_id, timeout=30, poll_interval=60))
            await asyncio.to_thread(wait_until, lambda: watched(conn, job_id), 10.0, "watch")
            await asyncio.sleep(0.2)  # the waiter is now in notifies()
            await errands.run_once(db, [answer])
            return await asyncio.wait_for(waiting, 10)

    finished = asyncio.run(main())
    assert (finished.id, finished.state, finished.result) == (job_id, "completed", {"answer": 2})


def test_a_completion_racing_the_watch_keeps_the_row_and_notifies(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """The completion's statement starts while a watch is not committed yet (its
    snapshot cannot see it): it waits for the watch's row lock, then sees the job
    watched, keeps it (retention 0) and notifies."""
    job_id = add(conn, "answer")
    conn.execute("SELECT errands.get_jobs('w1', ARRAY['answer'])")
    with psycopg.connect(db, autocommit=True) as listener, psycopg.connect(db) as watcher:
        listener.execute('LISTEN "errands:finished"')
        watcher.execute("SELECT * FROM errands.watch_jobs(ARRAY[%s::bigint])", [job_id])
        done: list[Any] = []

        def complete() -> None:
            with psycopg.connect(db, autocommit=True) as c:
                query = (
                    "SELECT errands.worker_complete_jobs('w1', ARRAY[%s::bigint], ARRAY['7'::json])"
                )
                done.extend(c.execute(query, [job_id]).fetchall())

        thread = threading.Thread(target=complete)
        thread.start()
        wait_until(
            lambda: (
                conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE '%%worker_complete_jobs%%'"
                ).fetchone()
                == (1,)
            ),
            what="the completion waiting for the watch's row lock",
        )
        watcher.commit()
        thread.join(10)
        assert done == [(job_id,)]
        notes = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert notes == [str(job_id)]
    row = conn.execute(
        "SELECT state, result::text FROM errands.finished_jobs WHERE id = %s", [job_id]
    ).fetchone()
    assert row == ("completed", "7")


def test_a_completion_before_the_watch_with_retention_0_is_an_unknown_job(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """Nothing is kept of a job nobody watched when it finished with retention 0."""
    job_id = add(conn, "answer", '{"n": 1}')
    run_once(db)
    with SyncWorkerUtils(db) as utils, pytest.raises(errands.UnknownJob) as caught:
        utils.wait_for_job(job_id)
    assert caught.value.job_id == job_id
    assert "retention 0" in str(caught.value)


def test_only_watched_jobs_are_notified(db: str, conn: psycopg.Connection[Any]) -> None:
    ids = [add(conn, "answer", '{"n": 1}') for _ in range(3)]
    conn.execute("SELECT * FROM errands.watch_jobs(%s::bigint[])", [[ids[0], ids[2]]])
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute('LISTEN "errands:finished"')
        conn.execute("SELECT errands.get_jobs('w1', ARRAY['answer'], 10)")
        conn.execute("SELECT errands.worker_complete_jobs('w1', %s::bigint[])", [ids])
        notes = [n.payload for n in listener.notifies(timeout=1)]
    assert notes == [f"{ids[0]},{ids[2]}"], "one NOTIFY for the batch, naming the watched jobs"
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute('LISTEN "errands:finished"')
        other = add(conn, "answer")
        conn.execute("SELECT errands.get_jobs('w1', ARRAY['answer'], 10)")
        conn.execute("SELECT errands.worker_complete_jobs('w1', ARRAY[%s::bigint])", [other])
        assert list(listener.notifies(timeout=0.5)) == [], "no NOTIFY for jobs nobody watches"


def test_timeout(db: str, conn: psycopg.Connection[Any]) -> None:
    job_id = add(conn, "answer")
    started = time.monotonic()
    with SyncWorkerUtils(db) as utils, pytest.raises(errands.WaitTimeout) as caught:
        utils.wait_for_job(job_id, timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 5
    assert isinstance(caught.value, TimeoutError)
    assert str(caught.value) == f"errands: job {job_id} did not finish within 0.5 s"


def test_unknown_id(db: str) -> None:
    async def main() -> None:
        async with WorkerUtils(db) as utils:
            with pytest.raises(errands.UnknownJob) as caught:
                await utils.wait_for_job(123456789)
            assert isinstance(caught.value, LookupError)
            assert "no job 123456789" in str(caught.value)

    asyncio.run(main())


def test_bad_arguments(db: str) -> None:
    with SyncWorkerUtils(db) as utils:
        with pytest.raises(ValueError, match="timeout >= 0 or None, got -1"):
            utils.wait_for_job(1, timeout=-1)
        with pytest.raises(TypeError, match="int job id, got '1'"):
            utils.wait_for_job("1", timeout=1)  # type: ignore[arg-type]


def test_a_job_that_fails_for_good_ends_the_wait_with_the_job(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    job_id = add(conn, "broken", max_attempts=1)

    async def main() -> None:
        async with WorkerUtils(db) as utils:
            waiting = asyncio.create_task(utils.wait_for_job(job_id, timeout=30, poll_interval=60))
            await asyncio.to_thread(wait_until, lambda: watched(conn, job_id), 10.0, "watch")
            await errands.run_once(db, [broken])
            with pytest.raises(errands.JobFailed) as caught:
                await asyncio.wait_for(waiting, 10)
            assert caught.value.job.id == job_id
            assert "broken on purpose" in (caught.value.job.last_error or "")

    asyncio.run(main())


def test_a_retried_job_keeps_the_waiter_waiting(db: str, conn: psycopg.Connection[Any]) -> None:
    job_id = add(conn, "broken", max_attempts=2)
    with SyncWorkerUtils(db) as utils:
        conn.execute("SELECT * FROM errands.watch_jobs(ARRAY[%s::bigint])", [job_id])
        run_once(db)  # first try fails: retrying, not final
        with pytest.raises(errands.WaitTimeout):
            utils.wait_for_job(job_id, timeout=0.3)


def test_cancelled_job(db: str, conn: psycopg.Connection[Any]) -> None:
    """A cancelled job (state cancelled in errands.finished_jobs) ends the wait with
    JobCancelled; written directly, as cancelling is another path's."""
    conn.execute(
        "INSERT INTO errands._finished_jobs (id, task_identifier, payload, priority, attempts,"
        " max_attempts, last_error, created_at, state) VALUES"
        " (9000000007, 'answer', '{}', 0, 0, 25, 'not needed', now(), 'cancelled')"
    )
    with SyncWorkerUtils(db) as utils, pytest.raises(errands.JobCancelled) as caught:
        utils.wait_for_job(9000000007)
    assert (caught.value.job.state, caught.value.job.last_error) == ("cancelled", "not needed")
    proc = wait_cli(db, "9000000007", "--json")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 5, err
    assert json.loads(out)["state"] == "cancelled"


def test_cli_exit_codes(db: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT errands.set_retention('1 hour')")
    done = add(conn, "answer", '{"n": 4}')
    failed = add(conn, "broken", max_attempts=1)
    run_once(db)
    pending = add(conn, "answer", '{"n": 0}')

    proc = wait_cli(db, str(done))
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (0, '{"answer": 8}\n', "")

    proc = wait_cli(db, str(failed), "--json")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 4, err
    assert json.loads(out)["state"] == "failed"
    assert "broken on purpose" in err

    proc = wait_cli(db, "987654321")
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (6, "")
    assert "no job 987654321" in err

    proc = wait_cli(db, str(pending), "--timeout", "0.2")
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (124, "")
    assert err.strip() == f"errands: job {pending} did not finish within 0.2 s"


def test_every_finishing_path_notifies_watched_jobs(db: str, conn: psycopg.Connection[Any]) -> None:
    """History path (a retention set), complete_jobs, and a failure for good; a
    failure that will be retried wakes the waiter too (it reads the state again)."""
    conn.execute("SELECT errands.set_retention('1 hour')")
    done, admin, failed = (
        add(conn, "answer"),
        add(conn, "answer"),
        add(conn, "broken", max_attempts=1),
    )
    conn.execute("SELECT * FROM errands.watch_jobs(%s::bigint[])", [[done, admin, failed]])
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute('LISTEN "errands:finished"')
        conn.execute("SELECT errands.get_jobs('w1', ARRAY['answer', 'broken'], 10)")
        conn.execute("SELECT errands.worker_return_jobs('w1', ARRAY[%s::bigint])", [admin])
        conn.execute("SELECT errands.worker_complete_jobs('w1', ARRAY[%s::bigint])", [done])
        conn.execute("SELECT errands.complete_jobs(ARRAY[%s::bigint])", [admin])
        conn.execute(
            "SELECT errands.worker_fail_jobs('w1', ARRAY[%s::bigint], ARRAY['boom'])", [failed]
        )
        notes = [n.payload for n in listener.notifies(timeout=1)]
    assert notes == [str(done), str(admin), str(failed)]


def test_a_large_batch_is_announced_in_payloads_under_the_limit(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """A NOTIFY payload must stay under 8000 bytes: 300 ids per notification."""
    conn.execute(
        "SELECT setval(pg_get_serial_sequence('errands._jobs', 'id'), 1000000000000000000)"
    )
    conn.execute(
        "SELECT count(*) FROM errands.add_jobs(ARRAY(SELECT ROW('answer', NULL, NULL, NULL,"
        " NULL, NULL, NULL, NULL)::errands.job_spec FROM generate_series(1, 700)))"
    )
    ids = [r[0] for r in conn.execute("SELECT id FROM errands._jobs ORDER BY id").fetchall()]
    conn.execute("SELECT count(*) FROM errands.watch_jobs(%s::bigint[])", [ids])
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute('LISTEN "errands:finished"')
        conn.execute("SELECT count(*) FROM errands.get_jobs('w1', ARRAY['answer'], 1000)")
        conn.execute("SELECT count(*) FROM errands.worker_complete_jobs('w1', %s::bigint[])", [ids])
        notes = [n.payload for n in listener.notifies(timeout=1)]
    assert [len(n.split(",")) for n in notes] == [300, 300, 100]
    assert [int(i) for n in notes for i in n.split(",")] == ids

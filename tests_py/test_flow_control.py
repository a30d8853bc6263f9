"""Flow control end to end: 4 real worker processes, limits set in SQL.

The tasks (tests_py/worker_script.py) record their own start and finish times in
``marks``; the limits must hold in what they observed.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg

import errands
from errands._connections import SingleConnectionSource
from errands._rate_wake import RateWake
from errands.limits import Limits
from tests_py.worker_support import MARKS_TABLE, finish, jobs, start_worker, wait_until


def _workers(db: str, poll: str = "0.05") -> list[subprocess.Popen[str]]:
    return [start_worker(db, "--concurrency", "5", "--poll-interval", poll) for _ in range(4)]


def _stop(workers: list[subprocess.Popen[str]]) -> None:
    for proc in workers:
        proc.send_signal(signal.SIGTERM)
    results = [finish(proc) for proc in workers]
    assert [code for code, _, _ in results] == [0] * len(workers), [e for _, _, e in results]


def _intervals(conn: psycopg.Connection[Any], prefix: str) -> list[tuple[datetime, datetime]]:
    rows = conn.execute(
        "SELECT min(at) FILTER (WHERE what = 'started'), max(at) FILTER (WHERE what = 'finished')"
        " FROM marks WHERE label LIKE %s GROUP BY label",
        [prefix + "%"],
    ).fetchall()
    return [(s, f) for s, f in rows]


def _max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    # Finishes sort before starts at the same instant: touching is not overlapping.
    events = sorted([(s, 1) for s, _ in intervals] + [(f, -1) for _, f in intervals])
    running = best = 0
    for _, step in events:
        running += step
        best = max(best, running)
    return best


def _specs(task: str, prefix: str, n: int, seconds: float, queue: str | None = None) -> list[Any]:
    return [
        errands.JobSpec(task, {"label": f"{prefix}{i}", "seconds": seconds}, queue_name=queue)
        for i in range(n)
    ]


def test_queue_and_task_concurrency_limits_hold_across_4_workers(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(MARKS_TABLE)
    with errands.SyncWorkerUtils(db) as utils:
        utils.set_queue_limits("api", Limits(concurrency=3))
        utils.set_task_limits("sync_sleepy", Limits(concurrency=2))
    workers = _workers(db)
    try:
        errands.add_jobs(
            conn,
            _specs("sleepy", "api", 30, 0.1, queue="api")
            + _specs("sync_sleepy", "sync", 16, 0.1)
            + _specs("sleepy", "free", 20, 0.1),
        )
        wait_until(lambda: not jobs(conn), timeout=60, what="all jobs to run")
    finally:
        _stop(workers)
    api, sync, free = (_intervals(conn, p) for p in ("api", "sync", "free"))
    assert (len(api), len(sync), len(free)) == (30, 16, 20)
    # The limits hold and are used: the queue runs 3 at once, the task 2, other
    # jobs are not held back by either (4 workers x 5 slots).
    assert _max_overlap(api) == 3
    assert _max_overlap(sync) == 2
    assert _max_overlap(free) > 3
    with errands.SyncWorkerUtils(db) as utils:
        (api_queue,) = utils.queues()
        assert (api_queue.queue_name, api_queue.running, api_queue.backlog) == ("api", 0, 0)
        assert [(t.task_identifier, t.running) for t in utils.task_limits()] == [("sync_sleepy", 0)]


def test_rate_limit_holds_in_every_sliding_window(db: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute(MARKS_TABLE)
    with errands.SyncWorkerUtils(db) as utils:
        utils.set_queue_limits(
            "rated", Limits(concurrency=50, rate_limit=10, rate_period=timedelta(seconds=1))
        )
    workers = _workers(db)
    try:
        errands.add_jobs(conn, _specs("sleepy", "r", 40, 0.0, queue="rated"))
        wait_until(lambda: not jobs(conn), timeout=60, what="all jobs to run")
    finally:
        _stop(workers)
    starts = sorted(s for s, _ in _intervals(conn, "r"))
    assert len(starts) == 40
    # The limit is on taking a job; a task starts a few ms after its fetch, so
    # windows are checked 100 ms short of the period.
    window = timedelta(milliseconds=900)
    worst = max(sum(1 for t in starts[i:] if t - s < window) for i, s in enumerate(starts))
    assert worst <= 10, worst
    # 40 starts at 10 per second cannot take less than 3 s (3 full windows).
    assert starts[-1] - starts[0] >= timedelta(seconds=2.9)


def test_paused_queue_starts_nothing_until_resumed(db: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute(MARKS_TABLE)
    with errands.SyncWorkerUtils(db) as utils:
        utils.pause_queue("held")
        utils.pause_task("sync_sleepy")
    # A long poll interval: only the NOTIFY of resume can wake the workers in time.
    workers = _workers(db, poll="30")
    try:
        errands.add_jobs(
            conn, _specs("sleepy", "h", 5, 0.0, queue="held") + _specs("sync_sleepy", "t", 3, 0.0)
        )
        time.sleep(1.0)
        assert conn.execute("SELECT count(*) FROM marks").fetchone() == (0,)
        with errands.SyncWorkerUtils(db) as utils:
            resumed = time.monotonic()
            utils.resume_queue("held")
            utils.resume_task("sync_sleepy")
        wait_until(lambda: not jobs(conn), timeout=10, what="the resumed jobs to run")
        assert time.monotonic() - resumed < 5
    finally:
        _stop(workers)
    assert conn.execute("SELECT count(*) FROM marks WHERE what = 'started'").fetchone() == (8,)


def test_cli_sets_shows_and_rejects_limits(db: str, conn: psycopg.Connection[Any]) -> None:
    from typer.testing import CliRunner

    from errands.cli import app

    def cli(*args: str) -> Any:
        return CliRunner().invoke(app, [*args, "-c", db])

    errands.add_jobs(conn, _specs("sleepy", "c", 3, 0.0, queue="tenant:1"))
    assert cli("queue", "limit", "tenant:*", "--concurrency", "2").exit_code == 0
    assert cli("queue", "pause", "tenant:1").stdout == "queue tenant:1: paused\n"
    assert cli("task", "limit", "sleepy", "--rate", "100", "--per", "60").exit_code == 0
    out = cli("queues").stdout.splitlines()
    assert out[0].split() == ["KIND", "NAME", "CONCURRENCY", "RATE", "PAUSED", "RUNNING", "BACKLOG"]
    assert out[1].split() == ["queue", "tenant:1", "2", "yes", "0", "3"]
    assert out[2].split() == ["task", "sleepy", "100/60s"]
    assert cli("queue", "resume", "tenant:1").exit_code == 0
    assert cli("queue", "limit", "tenant:*").exit_code == 0  # no option: limits removed
    assert conn.execute(
        "SELECT concurrency, paused FROM errands.queues WHERE queue_name = 'tenant:1'"
    ).fetchone() == (1, False)
    bad = cli("task", "limit", "sleepy", "--concurrency", "0")
    assert bad.exit_code == 1
    assert "concurrency must be at least 1 (NULL: no limit), got 0" in bad.stderr
    assert cli("task", "pause", "a*b").exit_code == 1


def test_a_freed_task_slot_wakes_the_workers(db: str, conn: psycopg.Connection[Any]) -> None:
    """Completing a job of a full task notifies the workers' channel (they may be
    waiting for that slot); completing a job of an unlimited task does not."""
    with errands.SyncWorkerUtils(db) as utils:
        utils.set_task_limits("capped", Limits(concurrency=1))
    errands.add_jobs(conn, [errands.JobSpec("capped", {}), errands.JobSpec("free", {})])
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute('LISTEN "errands:jobs"')
        (capped,) = conn.execute("SELECT id FROM errands.get_jobs('w', '{capped}', 5)").fetchone()
        (free,) = conn.execute("SELECT id FROM errands.get_jobs('w', '{free}', 5)").fetchone()
        conn.execute("SELECT errands.worker_complete_jobs('w', ARRAY[%s::bigint])", [free])
        assert list(listener.notifies(timeout=0.3)) == []
        conn.execute("SELECT errands.worker_complete_jobs('w', ARRAY[%s::bigint])", [capped])
        assert [n.channel for n in listener.notifies(timeout=2, stop_after=1)] == ["errands:jobs"]


def test_rate_limited_work_starts_when_the_window_reopens_not_at_the_poll(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """With a 30 s poll interval, 25 jobs at 10 per 2 seconds: the workers fetch when
    a window reopens (errands.next_start_at), and the limit still holds."""
    conn.execute(MARKS_TABLE)
    with errands.SyncWorkerUtils(db) as utils:
        utils.set_queue_limits(
            "rated", Limits(concurrency=50, rate_limit=10, rate_period=timedelta(seconds=2))
        )
    workers = _workers(db, poll="30")
    try:
        errands.add_jobs(conn, _specs("sleepy", "r", 25, 0.0, queue="rated"))
        # The windows allow it in 4 s; waiting for the polls would take over 30 s.
        wait_until(lambda: not jobs(conn), timeout=25, what="all jobs to run")
    finally:
        _stop(workers)
    starts = sorted(s for s, _ in _intervals(conn, "r"))
    # The limit is on taking a job, the marks are task starts: 10 % slack.
    window = timedelta(milliseconds=1800)
    assert max(sum(1 for t in starts[i:] if t - s < window) for i, s in enumerate(starts)) <= 10
    assert starts[-1] - starts[0] >= timedelta(seconds=3.6)


def test_freed_slots_wake_the_workers_whenever_one_may_be_waited_for(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """Every freed slot of a task with a concurrency limit notifies (not only the
    one that left it full), as does a freed slot of a full queue above
    concurrency 1; a serial queue's does not (its worker fetches the next job)."""
    with errands.SyncWorkerUtils(db) as utils:
        utils.set_task_limits("capped", Limits(concurrency=2))
        utils.set_queue_limits("wide", Limits(concurrency=2))
    errands.add_jobs(
        conn,
        [errands.JobSpec("capped", {}) for _ in range(2)]
        + [errands.JobSpec("free", {}, queue_name=q) for q in ("wide", "wide", "serial")],
    )
    capped = [r[0] for r in conn.execute("SELECT id FROM errands.get_jobs('w', '{capped}', 5)")]
    wide = [r[0] for r in conn.execute("SELECT id FROM errands.get_jobs('w', '{free}', 5)")]
    assert (len(capped), len(wide)) == (2, 3)  # 2 of "wide", 1 of "serial"

    def notified_by_completing(job_id: int) -> bool:
        conn.execute("SELECT errands.worker_complete_jobs('w', ARRAY[%s::bigint])", [job_id])
        return bool(list(listener.notifies(timeout=0.5, stop_after=1)))

    serial = conn.execute(
        "SELECT id FROM errands.jobs WHERE queue_name = 'serial'"
    ).fetchone()
    assert serial is not None
    wide_ids = [i for i in wide if i != serial[0]]
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute('LISTEN "errands:jobs"')
        assert [notified_by_completing(i) for i in capped] == [True, True]
        assert [notified_by_completing(i) for i in wide_ids] == [True, False]
        assert notified_by_completing(serial[0]) is False


def test_rate_wake_asks_again_only_after_a_poll_interval_without_rate_limits(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """A worker without rate limits asks errands.next_start_at at most once per poll
    interval: "no rate limit is set" is believed for that long."""

    async def main() -> list[float | None]:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as aconn:
            source = SingleConnectionSource(aconn)
            cached, fresh = RateWake(source, ["sleepy"], 60.0), RateWake(source, ["sleepy"], 60.0)
            first = await cached.delay()  # no rate limit: None, believed for 60 s
            conn.execute("SELECT errands.set_task_limits('sleepy', NULL, 1, interval '1 hour')")
            errands.add_jobs(conn, _specs("sleepy", "x", 2, 0.0))
            conn.execute("SELECT count(*) FROM errands.get_jobs('w', '{sleepy}', 5)")
            return [first, await cached.delay(), await fresh.delay()]

    first, cached, fresh = asyncio.run(main())
    assert (first, cached) == (None, None)
    assert fresh is not None and 3590 < fresh <= 3600.01  # the hour's window reopens

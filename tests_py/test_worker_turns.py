"""Idle workers take turns at answering notifications (errands._turns), with real
worker processes (tests_py/worker_script.py) and ``--poll-interval 60``: within
these tests only a notification, or a turn taken, can make a worker fetch.

Checked: one fetch per job however many workers idle; a job notified while the
worker holding the turn is busy (every slot), killed or stopping is still fetched
at once by an idle worker.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from errands._turns import turn_key
from tests_py.worker_support import (
    MARKS_TABLE,
    finish,
    kill,
    marks,
    start_worker,
    wait_until,
)

SLOW = 60.0  # poll interval and long jobs: far beyond every wait of these tests
PROMPT = 15.0  # "at once", with room for a loaded machine (far below SLOW)
KEY = turn_key(["sleepy", "sync_sleepy"])
TURN_LOCKS = (
    "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted)"
    " FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2"
    " AND classid = %s::int::oid AND objid = %s::int::oid"
)


@pytest.fixture
def workers(db: str, conn: psycopg.Connection[Any]) -> Iterator[list[subprocess.Popen[str]]]:
    conn.execute(MARKS_TABLE)
    procs: list[subprocess.Popen[str]] = []
    yield procs
    kill(*procs)


def start(db: str, procs: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    proc = start_worker(db, "--poll-interval", str(SLOW), *args)
    procs.append(proc)
    return proc


def turn(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(sessions holding the turn, sessions waiting for it)."""
    row = conn.execute(TURN_LOCKS, KEY).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def add(conn: psycopg.Connection[Any], label: str, seconds: float = 0.0) -> None:
    conn.execute(
        "SELECT errands.add_job('sleepy', json_build_object('label', %s::text, 'seconds', %s))",
        (label, seconds),
    )


def started(conn: psycopg.Connection[Any], label: str) -> str | None:
    row = conn.execute(
        "SELECT worker_id FROM marks WHERE label = %s AND what = 'started'", (label,)
    ).fetchone()
    return None if row is None else str(row[0])


def test_idle_workers_fetch_once_per_job(
    db: str, conn: psycopg.Connection[Any], workers: list[subprocess.Popen[str]]
) -> None:
    """Four idle workers, jobs added one by one: every job runs once, and the
    database runs about one get_jobs per job (each worker answering every
    notification would make it about four)."""
    dbname = conn.execute("SELECT current_database()").fetchone()
    assert dbname is not None
    conn.execute(f"ALTER DATABASE \"{dbname[0]}\" SET track_functions = 'pl'")
    for _ in range(4):
        start(db, workers, "--concurrency", "2")
    wait_until(lambda: turn(conn) == (1, 3), what="one worker holds the turn, three wait")
    n = 40
    for i in range(n):
        add(conn, f"j{i}")
        wait_until(lambda i=i: started(conn, f"j{i}"), PROMPT, f"job j{i} started")  # type: ignore[misc]
    wait_until(lambda: len(marks(conn)) == 2 * n, what="every job finished")
    for proc in workers:
        proc.send_signal(signal.SIGTERM)
    for proc in workers:
        assert finish(proc)[0] == 0
    labels = [label for label, what in marks(conn) if what == "started"]
    assert sorted(labels) == sorted(f"j{i}" for i in range(n))  # each exactly once

    def calls() -> int:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions"
            " WHERE schemaname = 'errands' AND funcname = 'get_jobs'"
        ).fetchone()
        return int(row[0]) if row else 0

    # The exited workers' backends flush their counts as they end.
    wait_until(lambda: calls() >= n, what="get_jobs counted")
    assert calls() <= n + 4 * 3, "about one fetch per job (plus each worker's start-up)"


def test_busy_holder_passes_the_turn(
    db: str, conn: psycopg.Connection[Any], workers: list[subprocess.Popen[str]]
) -> None:
    """The worker holding the turn runs a long job in its only slot: the next job
    notified starts at once on the idle worker, not after the long one."""
    start(db, workers, "--concurrency", "1")
    wait_until(lambda: turn(conn) == (1, 0), what="the first worker holds the turn")
    start(db, workers, "--concurrency", "1")
    wait_until(lambda: turn(conn) == (1, 1), what="the second worker waits")
    add(conn, "long", SLOW)
    first = wait_until(lambda: started(conn, "long"), PROMPT, "long started")
    add(conn, "next")
    second = wait_until(lambda: started(conn, "next"), PROMPT, "next started")
    assert second != first


def test_killed_holder_hands_the_turn_on(
    db: str, conn: psycopg.Connection[Any], workers: list[subprocess.Popen[str]]
) -> None:
    """A worker killed while it holds the turn releases it with its session: the
    waiting worker takes it and runs the next job at once."""
    holder = start(db, workers, "--concurrency", "2")
    wait_until(lambda: turn(conn) == (1, 0), what="the first worker holds the turn")
    start(db, workers, "--concurrency", "2")
    wait_until(lambda: turn(conn) == (1, 1), what="the second worker waits")
    kill(holder)
    wait_until(lambda: turn(conn) == (1, 0), PROMPT, "the second worker took the turn")
    add(conn, "after")
    wait_until(lambda: started(conn, "after"), PROMPT, "the job started")


def test_stopping_holder_gives_the_turn_back(
    db: str, conn: psycopg.Connection[Any], workers: list[subprocess.Popen[str]]
) -> None:
    """A worker told to stop while a job runs (it waits for it, with a free slot
    left) gives the turn back first: a job notified meanwhile starts at once on the
    idle worker."""
    holder = start(db, workers, "--concurrency", "2", "--shutdown-timeout", str(SLOW))
    wait_until(lambda: turn(conn) == (1, 0), what="the first worker holds the turn")
    add(conn, "long", 8.0)
    wait_until(lambda: started(conn, "long"), PROMPT, "long started")
    other = start(db, workers, "--concurrency", "2")
    wait_until(lambda: turn(conn) == (1, 1), what="the second worker waits")
    holder.send_signal(signal.SIGTERM)
    wait_until(lambda: turn(conn) == (1, 0), PROMPT, "the second worker took the turn")
    add(conn, "next")
    assert wait_until(lambda: started(conn, "next"), PROMPT, "next started") != started(
        conn, "long"
    )
    assert ("long", "finished") not in marks(conn), (
        "next waited for the stopping worker to finish long"
    )
    assert finish(holder)[0] == 0  # and the long job finished
    assert ("long", "finished") in marks(conn)
    other.send_signal(signal.SIGTERM)  # a worker waiting for the turn stops too
    assert finish(other)[0] == 0


def test_waiting_for_the_turn_ignores_statement_timeouts(
    db: str, conn: psycopg.Connection[Any], workers: list[subprocess.Popen[str]]
) -> None:
    """A connection string with a short statement_timeout / lock_timeout: the wait
    for the turn (as long as another worker holds it) is not cut short by them (the
    waiting worker keeps its LISTEN session, which holds its own lock too)."""
    dsn = conninfo.make_conninfo(db, options="-c statement_timeout=300 -c lock_timeout=300")
    start(dsn, workers, "--concurrency", "2")
    wait_until(lambda: turn(conn) == (1, 0), what="the first worker holds the turn")
    start(dsn, workers, "--concurrency", "2")
    wait_until(lambda: turn(conn) == (1, 1), what="the second worker waits")

    def waiting_pid() -> int:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2"
            " AND classid = %s::int::oid AND objid = %s::int::oid AND NOT granted",
            KEY,
        ).fetchone()
        assert row is not None
        return int(row[0])

    pid = waiting_pid()
    time.sleep(1.5)  # five times the timeouts
    assert turn(conn) == (1, 1)
    assert waiting_pid() == pid, "the waiting session was not cut and reconnected"


def test_killed_waiting_worker_is_rescued_at_once(
    db: str, conn: psycopg.Connection[Any], workers: list[subprocess.Popen[str]]
) -> None:
    """A worker killed while it waits for the turn, a job running in one of its
    slots: its session ends at once (its backend, blocked in the lock wait, checks
    its client), so its job runs again within seconds, not after the heartbeat
    timeout (30 s) that a session left behind would cost."""
    start(db, workers, "--concurrency", "2")
    wait_until(lambda: turn(conn) == (1, 0), what="the first worker holds the turn")
    # Due in 2 s: the holder fetched at its start and polls every 60 s, so the job
    # goes to the second worker's start-up fetch.
    conn.execute(
        "SELECT errands.add_job('sleepy', json_build_object('label', 'w-long', 'seconds', %s),"
        " run_at => now() + interval '2 seconds')",
        (SLOW,),
    )
    time.sleep(2.5)
    waiter = start(db, workers, "--concurrency", "2")
    first = wait_until(lambda: started(conn, "w-long"), PROMPT, "w-long started")
    wait_until(lambda: turn(conn) == (1, 1), what="the second worker waits")
    kill(waiter)

    def rerun_by() -> list[str]:
        rows = conn.execute(
            "SELECT worker_id FROM marks WHERE label = 'w-long' AND what = 'started'"
            " AND worker_id <> %s",
            (first,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    wait_until(rerun_by, PROMPT, "w-long ran again on the other worker")

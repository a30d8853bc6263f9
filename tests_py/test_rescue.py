"""Crashed-worker rescue (sql/schema/60_workers.sql, errands._heartbeat): a worker
killed with SIGKILL has its jobs made runnable again by a live worker within 5 s;
a live worker's long job is never rescued; a clean stop unregisters."""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Any

import psycopg

from tests_py.worker_support import MARKS_TABLE, finish, kill, locked_by, start_worker, wait_until


def _started_by(conn: psycopg.Connection[Any], label: str) -> list[str]:
    rows = conn.execute(
        "SELECT worker_id FROM marks WHERE label = %s AND what = 'started' ORDER BY id", [label]
    ).fetchall()
    return [r[0] for r in rows]


def test_sigkilled_workers_job_runs_again_within_5s(db: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute(MARKS_TABLE)
    victim = start_worker(db, "--poll-interval", "0.2")
    rescuer: subprocess.Popen[str] | None = None
    try:
        row = conn.execute(
            """SELECT (errands.add_job('sleepy', '{"label": "long", "seconds": 60}')).id"""
        ).fetchone()
        assert row is not None
        job_id: int = row[0]
        wait_until(lambda: _started_by(conn, "long"), what="the victim to start the job")
        victim_id = _started_by(conn, "long")[0]
        assert conn.execute(
            "SELECT count(*) FROM errands._workers WHERE id = %s", [victim_id]
        ).fetchone() == (1,)

        rescuer = start_worker(db, "--poll-interval", "0.2", "--shutdown-timeout", "1")
        # The rescuer's sweeps (every 2 s) must leave a live worker's job alone.
        time.sleep(2.5)
        assert locked_by(conn, job_id) == victim_id

        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        victim.communicate()
        wait_until(
            lambda: locked_by(conn, job_id) != victim_id, timeout=10, what="the job's rescue"
        )
        rescued = time.monotonic() - killed
        wait_until(lambda: len(_started_by(conn, "long")) == 2, timeout=10, what="a rerun")
        rerun = time.monotonic() - killed
        print(f"rescue delay after SIGKILL: {rescued:.2f} s; job running again after {rerun:.2f} s")
        assert rescued < 5.0
        assert rerun < 5.0
        runner = _started_by(conn, "long")[1]
        assert runner != victim_id
        attempts, last_error = conn.execute(
            "SELECT attempts, last_error FROM errands._jobs WHERE id = %s", [job_id]
        ).fetchone() or (None, None)
        assert attempts == 2  # the crashed try counted
        assert f"worker {victim_id} died" in (last_error or "")
        assert conn.execute(
            "SELECT count(*) FROM errands._workers WHERE id = %s", [victim_id]
        ).fetchone() == (0,)

        # A clean stop unregisters (the running job is failed by the shutdown).
        rescuer.send_signal(signal.SIGTERM)
        code, _, err = finish(rescuer)
        assert code == 0, err
        assert conn.execute("SELECT count(*) FROM errands._workers").fetchone() == (0,)
    finally:
        kill(victim, *([rescuer] if rescuer is not None else []))

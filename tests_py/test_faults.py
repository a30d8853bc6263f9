"""Surviving database faults (errands._retry; the restart grace of
errands.rescue_workers, sql/schema/60_workers.sql): a worker process
(`errands worker`) outlives a PostgreSQL restart and pg_terminate_backend of all
its connections, logs one warning per outage, reconnects, LISTENs again, finishes
the jobs that ran across the outage without interrupting them, and picks up new
jobs at once afterwards.

These tests restart PostgreSQL, so they use a cluster of their own (module scope),
never the shared session cluster."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import errands
from pgtap.cluster import PgCluster
from tests_py.worker_support import MARKS_TABLE, finish, wait_until

ROOT = Path(__file__).resolve().parent.parent
ERRANDS = str(Path(sys.executable).with_name("errands"))
TASKS = str(Path(__file__).with_name("worker_script.py"))
_names = itertools.count(1)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    pg = PgCluster().start()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def fdb(cluster: PgCluster) -> str:
    """A fresh database with errands installed and the marks table, on the module's
    own cluster (left for the cluster's removal)."""
    name = f"faults_{next(_names)}"
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    dsn = cluster.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        errands.install(conn)
        conn.execute(MARKS_TABLE)
    return dsn


class WorkerProcess:
    """`errands worker --log-format json` with its log in a file."""

    def __init__(self, dsn: str, log: Path, *args: str) -> None:
        self.log = log
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [ERRANDS, "worker", "-c", dsn, "--tasks", TASKS, "--no-install",
                 "--log-format", "json", *args],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out, text=True,
            )  # fmt: skip
        wait_until(lambda: "started (tasks" in self.log.read_text(), 30, "the worker to start")

    def records(self) -> list[dict[str, Any]]:
        """The worker's JSON log lines (psycopg's own lines, if any, are skipped)."""
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def messages(self, level: str) -> list[str]:
        return [r["message"] for r in self.records() if r["level"] == level]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code, _, _ = finish(self.proc, timeout=40)
            assert code == 0, self.log.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _add(conn: psycopg.Connection[Any], label: str, seconds: float) -> int:
    row = conn.execute(
        "SELECT (errands.add_job('sleepy', json_build_object('label', %s::text, "
        "'seconds', %s::float8))).id",
        [label, seconds],
    ).fetchone()
    assert row is not None
    job_id: int = row[0]
    return job_id


def _marks(dsn: str, what: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT label FROM marks WHERE what = %s ORDER BY id", [what])
        return [r[0] for r in rows.fetchall()]


def _pending_jobs(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM errands._jobs").fetchone()
        return int(row[0]) if row else -1


def _terminate_all_but(dsn: str, keep_pid: int | None = None) -> int:
    """pg_terminate_backend on every other session of the database: all the
    worker's connections (LISTEN, pool, tasks')."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND (%s::int IS NULL OR pid <> %s::int)",
            [keep_pid, keep_pid],
        ).fetchone()
        return int(row[0]) if row else 0


def _outage_checks(worker: WorkerProcess, dsn: str) -> None:
    """After an outage: the process runs, LISTEN works again (a new job starts
    within seconds although polling is every 60 s), one warning was logged."""
    assert worker.proc.poll() is None, worker.log.read_text()
    with psycopg.connect(dsn, autocommit=True) as conn:
        _add(conn, "after", 0.0)
    wait_until(lambda: "after" in _marks(dsn, "finished"), 10, "a job added after the outage")
    warnings = worker.messages("WARNING")
    outage = [m for m in warnings if "lost the database connection" in m]
    assert len(outage) == 1, warnings
    assert warnings == outage, warnings  # nothing else warned (no per-retry lines)
    assert any("database connection restored" in m for m in worker.messages("INFO"))


def test_postgres_restart_while_jobs_run(cluster: PgCluster, fdb: str, tmp_path: Path) -> None:
    worker = WorkerProcess(fdb, tmp_path / "worker.log", "--poll-interval", "60")
    try:
        with psycopg.connect(fdb, autocommit=True) as conn:
            labels = [f"long{i}" for i in range(4)] + [f"short{i}" for i in range(4)]
            for label in labels:
                _add(conn, label, 3.0 if label.startswith("long") else 0.0)
        wait_until(
            lambda: {f"long{i}" for i in range(4)} <= set(_marks(fdb, "started"))
            and _pending_jobs(fdb) == 4,
            10, "the long jobs to start and the short ones to finish",
        )  # fmt: skip
        cluster.restart()  # the long jobs are mid-run
        wait_until(lambda: _pending_jobs(fdb) == 0, 30, "every job to complete")
        finished = _marks(fdb, "finished")
        assert set(labels) <= set(finished)
        _outage_checks(worker, fdb)
    finally:
        try:
            worker.stop()
        finally:
            worker.kill()


def test_pg_terminate_backend_of_every_worker_connection(fdb: str, tmp_path: Path) -> None:
    worker = WorkerProcess(fdb, tmp_path / "worker.log", "--poll-interval", "60")
    try:
        with psycopg.connect(fdb, autocommit=True) as conn:
            for i in range(3):
                _add(conn, f"long{i}", 2.0)
        wait_until(lambda: len(_marks(fdb, "started")) == 3, 10, "the jobs to start")
        assert _terminate_all_but(fdb) >= 2  # at least the LISTEN and a pooled one
        wait_until(lambda: _pending_jobs(fdb) == 0, 30, "every job to complete")
        assert sorted(_marks(fdb, "finished")) == ["long0", "long1", "long2"]
        # Not interrupted, not run again: each ran once, its one try reported.
        assert sorted(_marks(fdb, "started")) == ["long0", "long1", "long2"]
        _outage_checks(worker, fdb)
    finally:
        try:
            worker.stop()
        finally:
            worker.kill()


def test_job_across_lost_connection_is_not_rescued_by_another_worker(
    cluster: PgCluster, fdb: str, tmp_path: Path
) -> None:
    """Worker A's LISTEN connection, which holds its advisory lock, is terminated
    while A runs a job, and A cannot reconnect for 4.5 s; worker B calls
    rescue_workers every 2 s meanwhile: A's fresh heartbeats keep B away, A's task
    is not interrupted, and A reports its completion."""
    options = ("--poll-interval", "60", "--heartbeat-interval", "1")
    workers = [WorkerProcess(fdb, tmp_path / f"{name}.log", *options) for name in ("w1", "w2")]
    try:
        with psycopg.connect(fdb, autocommit=True) as conn:
            _add(conn, "across", 8.0)
            wait_until(lambda: _marks(fdb, "started") == ["across"], 10, "a worker to start it")
            row = conn.execute("SELECT worker_id FROM marks").fetchone()
            assert row is not None
            a_id = row[0]  # A: the worker running the job; the other one is B
            a = next(w for w in workers if a_id in w.log.read_text())
            admin = psycopg.connect(cluster.dsn(), autocommit=True)
            dbname = conn.info.dbname
            admin.execute(f"ALTER DATABASE {dbname} ALLOW_CONNECTIONS false")
            terminated = conn.execute(
                "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l, "
                "LATERAL (SELECT errands._worker_lock_key(%s) AS k) key "
                "WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted "
                "AND l.classid = ((key.k >> 32) & 4294967295)::oid "
                "AND l.objid = (key.k & 4294967295)::oid",
                [a_id],
            ).fetchone()
            assert terminated == (1,)  # A's LISTEN connection
            time.sleep(4.5)
            lockless = conn.execute(
                "SELECT state FROM errands.workers WHERE id = %s", [a_id]
            ).fetchone()
            admin.execute(f"ALTER DATABASE {dbname} ALLOW_CONNECTIONS true")
            admin.close()
            assert lockless == ("dead",)  # its lock was free all along: only heartbeats
            # B's rescue_workers runs every 2 s while A reconnects and beats.
            wait_until(lambda: _pending_jobs(fdb) == 0, 30, "the job to complete")
            assert _marks(fdb, "started") == ["across"]  # ran once: B did not rescue it
            assert _marks(fdb, "finished") == ["across"]

            def alive() -> set[str]:
                rows = conn.execute("SELECT id FROM errands.workers WHERE state = 'alive'")
                return {r[0] for r in rows.fetchall()}

            # A re-took its lock on reconnecting (its backoff is at most 10 s).
            wait_until(lambda: a_id in alive(), 15, "A to be alive again")
            wait_until(
                lambda: any("restored" in m for m in a.messages("INFO")), 5, "A's recovery line"
            )
        assert a.proc.poll() is None
        assert [m for m in a.messages("WARNING") if "lost the database connection" in m]
    finally:
        for w in workers:
            try:
                w.stop()
            finally:
                w.kill()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--heartbeat-interval", "0"], "--heartbeat-interval must be positive, got 0.0"),
        (
            ["--heartbeat-interval", "5", "--heartbeat-timeout", "3"],
            "--heartbeat-timeout must be greater than --heartbeat-interval (5.0), got 3.0",
        ),
    ],
)
def test_bad_heartbeat_options_are_refused(args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [ERRANDS, "worker", "--tasks", TASKS, "-c", "postgresql://nowhere.invalid/x", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_bad_heartbeat_arguments_are_refused_by_run() -> None:
    with pytest.raises(
        ValueError,
        match=r"heartbeat_timeout must be greater than heartbeat_interval \(10\), got 10",
    ):
        asyncio.run(errands.run("postgresql://nowhere.invalid/x", TASKS, heartbeat_interval=10,
                                heartbeat_timeout=10))  # fmt: skip

"""Errands behind PgBouncer (Debian's ``pgbouncer``, started by these tests in front
of the test cluster, one process per pool mode).

* transaction pooling: enqueueing (Python ``add_job``/``add_jobs``, WorkerUtils, SQL
  ``errands.add_job``), install and ``set_crontab`` work with prepared statements
  off (``ERRANDS_PREPARE=0`` / ``prepare=False`` / ``prepare_threshold=None``); a
  worker works with ``--no-listen --no-prepare``: it polls, holds no session state
  (no advisory lock is left on a server connection) and is rescued by heartbeat;
* session pooling: a normal worker (LISTEN/NOTIFY wake-ups, advisory-lock liveness:
  a SIGKILLed worker's job runs again on another worker at once).

Skipped, with the reason, when the ``pgbouncer`` binary is missing (``make
system-deps`` installs it when run as root).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import errands
from tests_py.worker_support import MARKS_TABLE, finish, kill, locked_by, wait_until

PGBOUNCER_CANDIDATES = ("pgbouncer", "/usr/sbin/pgbouncer")
OS_USER = "errands-test"  # pgbouncer refuses to run as root (as pgtap/cluster.py's pg_ctl)

#: SQLSTATEs of psycopg's automatic prepared statements meeting another client's
#: server connection: duplicate_prepared_statement, invalid_sql_statement_name.
PREPARED_STATEMENT_ERRORS = {"42P05", "26000"}


def _find_pgbouncer() -> str | None:
    for name in PGBOUNCER_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgBouncer:
    """One pgbouncer process in ``pool_mode`` in front of the test cluster."""

    def __init__(self, binary: str, pool_mode: str, pg_host: str, pg_port: int) -> None:
        self.pool_mode = pool_mode
        self.dir = Path(tempfile.mkdtemp(prefix=f"errands-pgbouncer-{pool_mode}-"))
        self.dir.chmod(0o755)  # readable by errands-test when run as root
        self.port = 0
        self.binary = binary
        self.pg_host, self.pg_port = pg_host, pg_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "pgbouncer.log"

    def _write_config(self) -> Path:
        users = self.dir / "userlist.txt"
        users.write_text('"postgres" ""\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            textwrap.dedent(
                f"""\
                [databases]
                * = host={self.pg_host} port={self.pg_port}

                [pgbouncer]
                listen_addr = 127.0.0.1
                listen_port = {self.port}
                unix_socket_dir =
                auth_type = trust
                auth_file = {users}
                pool_mode = {self.pool_mode}
                max_client_conn = 300
                default_pool_size = 40
                server_reset_query = DISCARD ALL
                ignore_startup_parameters = extra_float_digits,options
                """
            )
        )
        for path in (users, ini):
            path.chmod(0o644)
        return ini

    def start(self) -> PgBouncer:
        for _ in range(5):
            self.port = _free_port()
            ini = self._write_config()
            user = ["-u", OS_USER] if os.geteuid() == 0 else []
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [self.binary, *user, str(ini)], stdout=log, stderr=subprocess.STDOUT
                )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
                        conn.execute("SELECT 1")
                    return self
                except psycopg.OperationalError:
                    time.sleep(0.05)
            self.stop_process()
        raise RuntimeError(f"pgbouncer did not start:\n{self.log.read_text(errors='replace')}")

    def dsn(self, dbname_or_dsn: str) -> str:
        """The DSN of a test database (name or DSN) through this pgbouncer."""
        if "=" in dbname_or_dsn or "://" in dbname_or_dsn:
            dbname = psycopg.conninfo.conninfo_to_dict(dbname_or_dsn)["dbname"]
        else:
            dbname = dbname_or_dsn
        return make_conninfo(host="127.0.0.1", port=self.port, user="postgres", dbname=str(dbname))

    def stop_process(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # safe shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        self.stop_process()
        shutil.rmtree(self.dir, ignore_errors=True)


def _bouncer(pg_cluster: Any, pool_mode: str) -> Iterator[PgBouncer]:
    binary = _find_pgbouncer()
    if binary is None:
        pytest.skip(
            "pgbouncer is not installed: `sudo apt-get install pgbouncer` "
            "(`make system-deps` installs it when run as root)"
        )
    if os.geteuid() == 0:
        from errands._embedded import ensure_os_user

        ensure_os_user(OS_USER)
    bouncer = PgBouncer(binary, pool_mode, pg_cluster.host, pg_cluster.port).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="module")
def tx_bouncer(pg_cluster: Any) -> Iterator[PgBouncer]:
    yield from _bouncer(pg_cluster, "transaction")


@pytest.fixture(scope="module")
def session_bouncer(pg_cluster: Any) -> Iterator[PgBouncer]:
    yield from _bouncer(pg_cluster, "session")


@pytest.fixture
def no_prepare(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERRANDS_PREPARE", "0")


def _count(conn: psycopg.Connection[Any], query: str, params: Any = None) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


# --- enqueueing through transaction pooling ----------------------------------------------

ROUNDS = 8  # > psycopg's prepare_threshold (5)


def test_without_the_switch_transaction_pooling_breaks_prepared_statements(
    db: str, tx_bouncer: PgBouncer
) -> None:
    """Why the switch exists: two clients taking turns on one server connection,
    psycopg preparing add_job after 5 runs, the second client's PREPARE collides (or
    finds no statement). The suite's pgbouncer reproduces the failure."""
    dsn = tx_bouncer.dsn(db)
    errors: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as a, psycopg.connect(dsn, autocommit=True) as b:
        for i in range(ROUNDS):
            for conn in (a, b):
                try:
                    errands.add_job(conn, "probe", {"i": i})
                except psycopg.Error as exc:
                    errors.append(exc.sqlstate or "")
    assert errors, "expected a prepared-statement error through transaction pooling"
    assert set(errors) <= PREPARED_STATEMENT_ERRORS, errors


def test_python_enqueue_through_transaction_pooling(
    db: str, conn: psycopg.Connection[Any], tx_bouncer: PgBouncer, no_prepare: None
) -> None:
    """ERRANDS_PREPARE=0: add_job/add_jobs on connections with psycopg's default
    prepare_threshold, taking turns, many times: every job stored."""
    dsn = tx_bouncer.dsn(db)
    with psycopg.connect(dsn, autocommit=True) as a, psycopg.connect(dsn, autocommit=True) as b:
        for i in range(ROUNDS):
            for name, c in (("a", a), ("b", b)):
                job = errands.add_job(c, "py_one", {"i": i, "conn": name}, job_key=f"{name}{i}")
                assert job.payload == {"i": i, "conn": name}
                jobs = errands.add_jobs(
                    c, [errands.JobSpec("py_many", {"i": i}), errands.JobSpec("py_many", [i])]
                )
                assert [j.payload for j in jobs] == [{"i": i}, [i]]
        # In the caller's transaction: rolled back means never there.
        with a.transaction(force_rollback=True):
            errands.add_job(a, "rolled_back")

    async def async_enqueue() -> None:
        conns = [await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(2)]
        try:
            for i in range(ROUNDS):
                for c in conns:
                    await errands.add_job_async(c, "py_async", {"i": i})
                    await errands.add_jobs_async(c, [errands.JobSpec("py_async", {"i": -i})])
        finally:
            for c in conns:
                await c.close()

    asyncio.run(async_enqueue())
    counts = dict(
        conn.execute(
            "SELECT task_identifier, count(*) FROM errands.jobs GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    assert counts == {
        "py_one": 2 * ROUNDS,
        "py_many": 4 * ROUNDS,
        "py_async": 4 * ROUNDS,
    }


def test_worker_utils_and_sql_enqueue_through_transaction_pooling(
    db: str, conn: psycopg.Connection[Any], tx_bouncer: PgBouncer
) -> None:
    """prepare=False on WorkerUtils/SyncWorkerUtils, prepare_threshold=None on the
    caller's connection for SQL add_job: interleaved with other clients, no error."""
    dsn = tx_bouncer.dsn(db)

    async def utils_enqueue() -> None:
        async with (
            errands.WorkerUtils(dsn, prepare=False) as u1,
            errands.WorkerUtils(dsn, prepare=False) as u2,
        ):
            for i in range(ROUNDS):
                for u in (u1, u2):
                    await u.add_job("utils_async", {"i": i})
                    await u.add_jobs([errands.JobSpec("utils_async", {"i": i})])

    asyncio.run(utils_enqueue())
    with (
        errands.SyncWorkerUtils(dsn, prepare=False) as s1,
        errands.SyncWorkerUtils(dsn, prepare=False) as s2,
        psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as a,
        psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as b,
    ):
        for i in range(ROUNDS):
            for s in (s1, s2):
                s.add_job("utils_sync", {"i": i})
            for c in (a, b):
                c.execute("SELECT errands.add_job('sql', json_build_object('i', %s::int))", [i])
                c.execute(
                    "SELECT errands.add_jobs(ARRAY[('sql', NULL, NULL, NULL, NULL, NULL, %s::int,"
                    " NULL)]::errands.job_spec[])",
                    [i],
                )
    counts = dict(
        conn.execute(
            "SELECT task_identifier, count(*) FROM errands.jobs GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    assert counts == {"sql": 4 * ROUNDS, "utils_async": 4 * ROUNDS, "utils_sync": 2 * ROUNDS}


def test_install_and_crontab_through_transaction_pooling(
    empty_db: str, tx_bouncer: PgBouncer
) -> None:
    """The installer (one transaction, transaction-scoped advisory lock) and
    set_crontab (a temporary table dropped at commit) keep no session state."""
    dsn = tx_bouncer.dsn(empty_db)
    good = "0 4 * * * digest\n*/5 * * * * poll ?id=poller"
    with (
        psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as a,
        psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as b,
    ):
        errands.install(a)
        errands.install(b)  # a no-op the second time
        for _ in range(ROUNDS):
            for c in (a, b):
                assert _count(c, "SELECT errands.set_crontab(%s)", [good]) == 2
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="line 2"):
            a.execute("SELECT errands.set_crontab(%s)", ["0 4 * * * digest\n61 * * * * bad"])
        items = b.execute("SELECT id FROM errands._crontab_items ORDER BY id").fetchall()
        assert items == [("digest",), ("poller",)]
        assert _count(b, "SELECT errands.cron_tick()") >= 0


def test_bad_errands_prepare_is_a_clear_cli_error(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text("from errands import task\n\n@task\ndef t(p, h): pass\n")
    result = subprocess.run(
        [sys.executable, "-m", "errands.cli", "worker", "--tasks", "tasks.py", "-c", "dbname=x"],
        cwd=tmp_path,
        env={**os.environ, "ERRANDS_PREPARE": "maybe"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "ERRANDS_PREPARE must be 0 or 1, got 'maybe'" in result.stderr


# --- workers ---------------------------------------------------------------------------------

TASKS = """\
import asyncio
import time

from errands import task


@task
async def mark(payload, helpers):
    async with helpers.connection() as conn:
        await conn.execute(
            "INSERT INTO marks (label, what, worker_id) VALUES (%s, 'started', %s)",
            [payload["label"], helpers.worker_id],
        )
    await asyncio.sleep(payload.get("seconds", 0))
    async with helpers.connection() as conn:
        await conn.execute(
            "INSERT INTO marks (label, what, worker_id) VALUES (%s, 'finished', %s)",
            [payload["label"], helpers.worker_id],
        )


@task
def sync_mark(payload, helpers):
    with helpers.sync_connection() as conn:
        conn.execute(
            "INSERT INTO marks (label, what, worker_id) VALUES (%s, 'finished', %s)",
            [payload["label"], helpers.worker_id],
        )
"""


def _start_cli_worker(cwd: Path, dsn: str, *args: str) -> subprocess.Popen[str]:
    (cwd / "bouncer_tasks.py").write_text(TASKS)
    command = [sys.executable, "-m", "errands.cli", "worker", "-t", "bouncer_tasks.py"]
    command += ["-c", dsn, "--no-install", *args]
    return subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _workers(conn: psycopg.Connection[Any]) -> dict[str, tuple[str, bool]]:
    rows = conn.execute("SELECT id, state, session_lock FROM errands.workers").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def _marks(conn: psycopg.Connection[Any], what: str) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT label, worker_id FROM marks WHERE what = %s ORDER BY id", [what]
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def test_worker_through_session_pooling(
    db: str, conn: psycopg.Connection[Any], session_bouncer: PgBouncer, tmp_path: Path
) -> None:
    """Session pooling keeps a server connection per client: LISTEN wakes the
    worker (its poll interval is 60 s), and the advisory lock lives with the client,
    so a SIGKILLed worker is seen dead (pgbouncer's DISCARD ALL drops the lock) and
    its job runs again on another worker long before the 30 s heartbeat timeout."""
    conn.execute(MARKS_TABLE)
    dsn = session_bouncer.dsn(db)
    session_args = ("--poll-interval", "60", "-j", "2", "--shutdown-timeout", "1")
    victim = _start_cli_worker(tmp_path, dsn, *session_args)
    rescuer: subprocess.Popen[str] | None = None
    try:
        wait_until(lambda: len(_workers(conn)) == 1, timeout=20, what="the worker to register")
        ((victim_id, (state, session_lock)),) = _workers(conn).items()
        assert (state, session_lock) == ("alive", True)
        for i in range(4):  # after the first, only a NOTIFY can wake the worker this soon
            conn.execute("SELECT errands.add_job('mark', json_build_object('label', %s))", [i])
            wait_until(
                lambda i=i: (str(i), victim_id) in _marks(conn, "finished"),
                timeout=15,
                what=f"job {i} to run",
            )
        row = conn.execute(
            """SELECT (errands.add_job('mark', '{"label": "long", "seconds": 60}')).id"""
        ).fetchone()
        assert row is not None
        long_id: int = row[0]
        wait_until(lambda: ("long", victim_id) in _marks(conn, "started"), what="the long job")
        rescuer = _start_cli_worker(tmp_path, dsn, *session_args)
        wait_until(lambda: len(_workers(conn)) == 2, timeout=20, what="the rescuer to register")
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
        wait_until(
            lambda: locked_by(conn, long_id) not in (victim_id,),
            timeout=15,
            what="the rescue of the SIGKILLed worker's job",
        )
        wait_until(
            lambda: len([m for m in _marks(conn, "started") if m[0] == "long"]) == 2,
            timeout=15,
            what="the long job to run again",
        )
        assert victim_id not in _workers(conn)
        rescuer.send_signal(signal.SIGTERM)
        code, _, err = finish(rescuer, timeout=20)
        assert code == 0, err
        rescuer = None
    finally:
        kill(victim, *([rescuer] if rescuer else []))


def test_no_listen_worker_through_transaction_pooling(
    db: str, conn: psycopg.Connection[Any], tx_bouncer: PgBouncer, tmp_path: Path
) -> None:
    """--no-listen --no-prepare through transaction pooling: two workers poll and run
    every job exactly once; they register without a session lock (none is left on any
    server connection) and stay alive however long their jobs run; a SIGKILLed one is
    rescued by heartbeat timeout (by the other worker's rescue loop)."""
    conn.execute(MARKS_TABLE)
    dsn = tx_bouncer.dsn(db)
    args = ("--no-listen", "--no-prepare", "--poll-interval", "0.2", "-j", "3",
            "--shutdown-timeout", "1")  # fmt: skip
    procs = [_start_cli_worker(tmp_path, dsn, *args) for _ in range(2)]
    try:
        wait_until(lambda: len(_workers(conn)) == 2, timeout=20, what="both workers to register")
        assert set(_workers(conn).values()) == {("alive", False)}

        specs = [
            errands.JobSpec("mark" if i % 2 else "sync_mark", {"label": f"j{i}"}) for i in range(40)
        ]
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as enqueue:
            for spec in specs:  # one add_job each: jobs keep arriving while they poll
                errands.add_job(enqueue, spec.identifier, spec.payload)
        wait_until(
            lambda: len(_marks(conn, "finished")) >= 40, timeout=30, what="40 jobs to finish"
        )
        finished = sorted(label for label, _ in _marks(conn, "finished"))
        assert finished == sorted(f"j{i}" for i in range(40)), "each job exactly once"
        # A task marks itself finished before its worker writes the completion.
        wait_until(
            lambda: _count(conn, "SELECT count(*) FROM errands.jobs") == 0,
            timeout=10, what="the completions to be written",
        )  # fmt: skip
        assert _count(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0

        row = conn.execute(
            """SELECT (errands.add_job('mark', '{"label": "long", "seconds": 60}')).id"""
        ).fetchone()
        assert row is not None
        long_id: int = row[0]
        wait_until(lambda: _marks(conn, "started")[-1:] == [("long", locked_by(conn, long_id))],
                   what="the long job to start")  # fmt: skip
        victim_id = locked_by(conn, long_id)
        assert victim_id is not None
        time.sleep(2.5)  # > the rescue interval: without a session lock it is still alive
        assert _workers(conn)[victim_id] == ("alive", False)
        assert locked_by(conn, long_id) == victim_id

        victim = next(p for p in procs if str(p.pid) == _pid_of(conn, victim_id))
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
        time.sleep(2.5)
        # Nothing tells a SIGKILLed sessionless worker from a live one but its heartbeat.
        assert locked_by(conn, long_id) == victim_id
        conn.execute(
            "UPDATE errands._workers SET last_heartbeat = now() - interval '1 minute'"
            " WHERE id = %s",
            [victim_id],
        )  # as if 30 s passed without a heartbeat
        wait_until(lambda: locked_by(conn, long_id) != victim_id, timeout=15, what="the rescue")
        wait_until(
            lambda: len([m for m in _marks(conn, "started") if m[0] == "long"]) == 2,
            timeout=15,
            what="the long job to run again",
        )
        assert victim_id not in _workers(conn)
        (survivor,) = [p for p in procs if p is not victim]
        survivor.send_signal(signal.SIGTERM)
        code, _, err = finish(survivor, timeout=40)
        assert code == 0, err
        assert _workers(conn) == {}
    finally:
        kill(*procs)


def _pid_of(conn: psycopg.Connection[Any], worker_id: str) -> str:
    row = conn.execute("SELECT pid FROM errands.workers WHERE id = %s", [worker_id]).fetchone()
    assert row is not None
    return str(row[0])


def test_upgrade_grants_the_sessionless_register_worker(empty_db: str) -> None:
    """A role given grant_worker on a version-16 database may still call
    register_worker(..., session_lock) and read the jobs after the upgrade
    (CREATE OR REPLACE keeps its grants)."""
    from psycopg import sql

    from pgtap.cluster import find_psql

    fixture = Path(__file__).resolve().parent / "fixtures" / "install_v16.sql"
    run = subprocess.run(
        [find_psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(fixture), empty_db],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    role = f"{psycopg.conninfo.conninfo_to_dict(empty_db)['dbname']}_w"
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        try:
            conn.execute("SELECT errands.grant_worker(%s::regrole)", [role])
            errands.install(conn)
            row = conn.execute(
                "SELECT has_function_privilege(%s,"
                " 'errands.register_worker(text, text, integer, boolean)', 'EXECUTE')"
                " AND has_table_privilege(%s, 'errands.jobs', 'SELECT')",
                [role, role],
            ).fetchone()
            assert row == (True,)
        finally:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))

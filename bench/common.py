"""Shared parts of the benchmark (bench/run.py): sizes, the report, the durable
cluster, worker processes.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import errands  # noqa: E402
from pgtap import cluster as pgtap_cluster  # noqa: E402
from pgtap.cluster import PgCluster  # noqa: E402

BENCH = ROOT / "bench"
WORKER = BENCH / "worker.py"
TASKS = BENCH / "tasks.py"
PY = sys.executable
PEERS_DIR = BENCH / "peers"
GRAPHILE_DIR = PEERS_DIR / "graphile"
PEERS_VENV = PEERS_DIR / ".venv"
PEERS_REQUIREMENTS = PEERS_DIR / "requirements.txt"
ERRANDS_CLI = str(Path(PY).parent / "errands")
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
SHOWN = [*DURABLE, "wal_sync_method", "shared_buffers", "max_connections"]


@dataclass
class Sizes:
    w1: int
    w1_concurrency: list[int]
    w1_processes: list[int]
    w2: int
    w3_bulk: int
    w3_single: int
    w4_extra: int
    w4_locked: int
    w5: int


QUICK = Sizes(10_000, [10], [], 200, 20_000, 2_000, 200_000, 20_000, 10_000)
FULL = Sizes(50_000, [5, 10, 20, 40], [2, 4], 1_000, 100_000, 2_000, 1_000_000, 100_000, 50_000)


@dataclass
class Report:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # id, what, value, target
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, what: str, value: str, target: str = "", raw: Any = None) -> None:
        self.rows.append((key, what, value, target))
        self.data[key] = raw
        print(f"  {key:<22} {what:<58} {value:>14}  {target}", flush=True)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- cluster ---------------------------------------------------------------------------


@contextmanager
def durable_cluster() -> Iterator[PgCluster]:
    # On disk, not /dev/shm: fsync on tmpfs would measure nothing.
    scratch = "/var/tmp" if os.geteuid() == 0 else tempfile.gettempdir()
    os.environ.setdefault("ERRANDS_PG_TMPDIR", scratch)
    # The test cluster's server options turn durability off; same options, durable.
    options = pgtap_cluster.SERVER_OPTIONS
    for name, value in DURABLE.items():
        options = re.sub(rf"-c {name}=\S+", f"-c {name}={value}", options)
    pgtap_cluster.SERVER_OPTIONS = options
    cluster = PgCluster().start()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            for name, value in DURABLE.items():
                got = conn.execute(f"SHOW {name}").fetchone()
                assert got is not None and got[0] == value, (name, got)
        yield cluster
    finally:
        cluster.stop()


def connect(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


def scalar(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


# --- machine info ----------------------------------------------------------------------


def machine_info(conn: psycopg.Connection[Any], cluster: PgCluster) -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    fs = subprocess.run(
        ["df", "-T", str(cluster.datadir.parent.parent)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()[-1:]
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "postgresql": scalar(conn, "SELECT version()"),
        "errands": errands.__version__,
        "settings": {n: scalar(conn, f"SHOW {n}") for n in SHOWN},
        "data_fs": fs[0].split()[1] if fs and len(fs[0].split()) > 1 else "?",
    }


# --- workers ---------------------------------------------------------------------------


@dataclass
class WorkerResult:
    seconds: float
    ok: int
    failed: int
    distinct: int
    max_rss_mb: float
    cpu_seconds: float = 0.0
    """User + system CPU time of the worker processes (less sensitive than
    ``seconds`` to other load on the machine)."""


def run_once_workers(dsn: str, concurrency: int, processes: int = 1) -> WorkerResult:
    """Start ``processes`` ``--once`` workers together; time until the last exits."""
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [PY, str(WORKER), dsn, str(concurrency), "once"], stdout=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    rss = 0.0
    cpu = 0.0
    outs: list[dict[str, int]] = []
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        cpu += usage.ru_utime + usage.ru_stime
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.stdout is not None
        out = proc.stdout.read()
        if proc.returncode != 0:
            raise RuntimeError(f"worker exited with {proc.returncode}: {out}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
        rss = max(rss, float(outs[-1]["vmhwm_mb"]))
    seconds = time.perf_counter() - t0
    return WorkerResult(
        seconds,
        sum(o["ok"] for o in outs),
        sum(o["failed"] for o in outs),
        sum(o["distinct"] for o in outs),
        rss,
        cpu,
    )


def enqueue_noops(conn: psycopg.Connection[Any], n: int, queue: str | None = None) -> None:
    conn.execute(
        "SELECT count(*) FROM errands.add_jobs(ARRAY(SELECT ROW('noop', NULL, %s::text, NULL,"
        " NULL, NULL, NULL, NULL)::errands.job_spec FROM generate_series(1, %s::int)))",
        (queue, n),
    )


def jobs_count(conn: psycopg.Connection[Any]) -> int:
    return int(scalar(conn, "SELECT count(*) FROM errands._jobs"))


def w1_round(
    dsn: str, n: int, concurrency: int, processes: int = 1, leftover: int = 0
) -> WorkerResult:
    """Enqueue n no-ops with one add_jobs call, run the worker(s), check exactly-once."""
    with connect(dsn) as conn:
        before = jobs_count(conn)
        enqueue_noops(conn, n)
        conn.execute("VACUUM ANALYZE errands._jobs")
    res = run_once_workers(dsn, concurrency, processes)
    with connect(dsn) as conn:
        left = jobs_count(conn)
    problems = []
    if res.ok != n or res.distinct != n or res.failed:
        problems.append(f"completions ok={res.ok} failed={res.failed} distinct={res.distinct}")
    if left != before - leftover:
        problems.append(f"{left} rows left, expected {before - leftover}")
    if problems:
        raise RuntimeError(f"W1 exactly-once check failed (n={n}): {'; '.join(problems)}")
    return res


def create_database(cluster: PgCluster, name: str, install_sql: str | None) -> str:
    """A fresh database ``name`` with errands installed: this checkout's
    (``install_sql`` None) or an earlier install.sql (the "before" of a before/after
    run), as :func:`install_database`. Returns its DSN."""
    with connect(cluster.dsn()) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    dsn = cluster.dsn(name)
    install_database(dsn, install_sql)
    return dsn


def install_database(dsn: str, install_sql: str | None = None) -> None:
    """Install errands into ``dsn`` (this checkout's, or ``install_sql``) and add one
    job and truncate, so the first measured call is not the first use of the tables."""
    with connect(dsn) as conn:
        if install_sql is None:
            errands.install(conn)
        else:
            conn.execute(install_sql.encode())
        conn.execute("SELECT errands.add_job(identifier => 'noop')")
        conn.execute("TRUNCATE errands._jobs")


def w1_medians(dsns: dict[str, str], rounds: int, n: int) -> dict[str, float]:
    """W1 c10 (n no-ops) on each database, ``rounds`` rounds interleaved (the order
    reversed every other round); prints each round, returns the median jobs/s."""
    rates: dict[str, list[float]] = {name: [] for name in dsns}
    names = list(dsns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            res = w1_round(dsns[name], n, 10)
            rates[name].append(n / res.seconds)
            print(f"  round {r + 1} {name:>6}: {n / res.seconds:,.0f} jobs/s", flush=True)
    return {name: statistics.median(v) for name, v in rates.items()}

"""Errands benchmark: ``make bench`` (full) / ``make bench-quick`` (< 2 minutes).

Starts a throwaway PostgreSQL cluster (pgtap.cluster.PgCluster, switched to durable
settings: fsync, synchronous_commit and full_page_writes on, data on disk rather than
tmpfs), installs errands and runs W1..W5 (see bench/README.md).  Prints a markdown
table and writes bench/results/<timestamp>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import psycopg
from psycopg.types.json import Json

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
    outs: list[dict[str, int]] = []
    for proc in procs:
        _, status, _ = os.wait4(proc.pid, 0)
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


# --- workloads -------------------------------------------------------------------------


def w1(dsn: str, sz: Sizes, rep: Report) -> float:
    best = (0.0, 0)
    base = 0.0
    rss = 0.0
    for c in sz.w1_concurrency:
        res = w1_round(dsn, sz.w1, c)
        rate = sz.w1 / res.seconds
        rss = max(rss, res.max_rss_mb)
        rep.add(
            f"W1.c{c}",
            f"throughput, 1 process, concurrency {c} ({sz.w1:,} no-ops, exactly once)",
            f"{rate:,.0f} jobs/s",
            "~45,000 (Graphile)" if c == 10 else "",
            rate,
        )
        if c == 10:
            base = rate
        best = max(best, (rate, c))
    if len(sz.w1_concurrency) > 1:
        rep.add("W1.best", f"best concurrency: {best[1]}", f"{best[0]:,.0f} jobs/s", "", best[0])
    for p in sz.w1_processes:
        res = w1_round(dsn, sz.w1, 10, processes=p)
        rate = sz.w1 / res.seconds
        rep.add(
            f"W1.p{p}",
            f"throughput, {p} processes x concurrency 10",
            f"{rate:,.0f} jobs/s",
            "",
            rate,
        )
    rep.add("RSS", "worker max RSS during W1", f"{rss:.1f} MB", "<= 80 MB", rss)
    return base


ERRANDS_ADD_LATENCY = "SELECT errands.add_job(identifier => 'latency', payload => %s::json)"


def latencies(cmd: list[str], dsn: str, add_sql: str, n: int) -> list[float]:
    """Start a continuous worker (prints READY), add n jobs 10 ms apart, read start - t."""
    with tempfile.NamedTemporaryFile("r", suffix=".lat", delete=False) as tmp:
        path = Path(tmp.name)
    env = {**os.environ, "BENCH_LATENCY_FILE": str(path)}
    proc = subprocess.Popen([*cmd, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    lat: list[float] = []
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "READY":
            raise RuntimeError(f"W2 worker did not start: {cmd}")
        time.sleep(1.0)  # let it go idle
        with connect(dsn) as conn:
            conn.execute("SELECT 1")
            for _ in range(n):
                conn.execute(add_sql, (Json({"t": time.time()}),))
                time.sleep(0.010)
        deadline = time.time() + 30
        while time.time() < deadline:
            lat = [float(x) for x in path.read_text().split()]
            if len(lat) >= n:
                break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        path.unlink(missing_ok=True)
    if len(lat) != n:
        raise RuntimeError(f"W2: {len(lat)} of {n} latencies recorded ({out})")
    return lat


def percentiles(lat: list[float]) -> dict[str, float]:
    lat = sorted(lat)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, round(p / 100 * (len(lat) - 1)))]

    return {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": lat[-1]}


def w2(dsn: str, sz: Sizes, rep: Report) -> None:
    cmd = [PY, str(WORKER), dsn, "10", "continuous"]
    stats = percentiles(latencies(cmd, dsn, ERRANDS_ADD_LATENCY, sz.w2))
    text = " / ".join(f"{v:.2f}" for v in stats.values())
    rep.add(
        "W2",
        f"latency add_job -> task start, p50/p90/p99/max ({sz.w2} jobs)",
        f"{text} ms",
        "p50 <= 2, p99 <= 4",
        stats,
    )


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def w3(dsn: str, sz: Sizes, rep: Report) -> None:
    n = sz.w3_bulk
    with connect(dsn) as conn:
        conn.execute("TRUNCATE errands._jobs")
        s = timed(lambda: enqueue_noops(conn, n))
        assert jobs_count(conn) == n
        rep.add(
            "W3.sql",
            f"bulk add_jobs from SQL ({n:,} specs, generate_series)",
            f"{n / s:,.0f} jobs/s",
            "~115,000",
            n / s,
        )
        conn.execute("TRUNCATE errands._jobs")
        specs = [{"identifier": "noop"} for _ in range(n)]
        s = timed(lambda: errands.add_jobs(conn, specs))
        assert jobs_count(conn) == n
        rep.add(
            "W3.py",
            f"bulk errands.add_jobs from Python ({n:,} specs)",
            f"{n / s:,.0f} jobs/s",
            "~115,000",
            n / s,
        )
        conn.execute("TRUNCATE errands._jobs")
        with errands.SyncWorkerUtils(dsn) as utils:
            s = timed(lambda: utils.add_jobs(specs))
        assert jobs_count(conn) == n
        rep.add(
            "W3.utils",
            f"bulk SyncWorkerUtils.add_jobs ({n:,} specs)",
            f"{n / s:,.0f} jobs/s",
            "~115,000",
            n / s,
        )
        conn.execute("TRUNCATE errands._jobs")
        conn.execute("DROP TABLE IF EXISTS bench_plain")
        conn.execute("CREATE TABLE bench_plain (LIKE errands._jobs INCLUDING ALL)")
        task_id = scalar(conn, "SELECT id FROM errands._tasks WHERE identifier = 'noop'")
        m = sz.w3_single
        add_q = "SELECT errands.add_job(identifier => %s::text)"
        ins_q = "INSERT INTO bench_plain (task_id, payload) VALUES (%s, '{}')"
        t_add = t_ins = 0.0
        for _ in range(m):  # interleaved: noise hits both equally
            t0 = time.perf_counter()
            conn.execute(add_q, ("noop",), prepare=True)
            t1 = time.perf_counter()
            conn.execute(ins_q, (task_id,), prepare=True)
            t_add += t1 - t0
            t_ins += time.perf_counter() - t1
        assert jobs_count(conn) == m
        conn.execute("TRUNCATE errands._jobs")
        conn.execute("DROP TABLE bench_plain")
    ratio = t_add / t_ins
    rep.add(
        "W3.single",
        f"{m:,} single add_job calls, one connection",
        f"{m / t_add:,.0f} jobs/s",
        "",
        m / t_add,
    )
    rep.add(
        "W3.insert",
        f"{m:,} bare INSERTs (same loop, LIKE errands._jobs)",
        f"{m / t_ins:,.0f} rows/s",
        "",
        m / t_ins,
    )
    rep.add("W3.ratio", "single add_job time / bare INSERT time", f"{ratio:.2f}x", "<= 1.10", ratio)


def w4(dsn: str, sz: Sizes, rep: Report, base: float) -> None:
    extra = sz.w4_extra
    third = extra // 3
    with connect(dsn) as conn:
        conn.execute("TRUNCATE errands._jobs")
        conn.execute(
            "INSERT INTO errands._tasks (identifier) VALUES ('unknown_task') ON CONFLICT DO NOTHING"
        )
        noop = scalar(conn, "SELECT id FROM errands._tasks WHERE identifier = 'noop'")
        unknown = scalar(conn, "SELECT id FROM errands._tasks WHERE identifier = 'unknown_task'")
        conn.execute(
            "INSERT INTO errands._jobs (task_id, run_at) SELECT %s, now() + interval '1 year'"
            " FROM generate_series(1, %s)",
            (noop, third),
        )
        conn.execute(
            "INSERT INTO errands._jobs (task_id, attempts, max_attempts, last_error)"
            " SELECT %s, 1, 1, 'boom' FROM generate_series(1, %s)",
            (noop, third),
        )
        conn.execute(
            "INSERT INTO errands._jobs (task_id) SELECT %s FROM generate_series(1, %s)",
            (unknown, extra - 2 * third),
        )
        conn.execute("VACUUM ANALYZE errands._jobs")
    res = w1_round(dsn, sz.w1, 10)
    rate = sz.w1 / res.seconds
    rep.add(
        "W4.extra",
        f"W1 c10 with {extra:,} extra rows (scheduled/failed/unknown task)",
        f"{rate:,.0f} jobs/s",
        "",
        rate,
    )
    rep.add(
        "W4.extra.ratio", "  ratio to plain W1 c10", f"{rate / base:.2f}", ">= 0.90", rate / base
    )
    with connect(dsn) as conn:
        conn.execute("TRUNCATE errands._jobs")
        half = sz.w4_locked // 2
        enqueue_noops(conn, half, "bench-q1")
        enqueue_noops(conn, sz.w4_locked - half, "bench-q2")
        got = conn.execute(
            "SELECT id FROM errands.get_jobs('fake-worker', ARRAY['noop'], 2)"
        ).fetchall()
        assert len(got) == 2, got
        conn.execute("VACUUM ANALYZE errands._jobs")
    res = w1_round(dsn, sz.w1, 10, leftover=0)
    rate = sz.w1 / res.seconds
    rep.add(
        "W4.locked",
        f"W1 c10 with {sz.w4_locked:,} jobs behind 2 locked named queues",
        f"{rate:,.0f} jobs/s",
        "",
        rate,
    )
    rep.add(
        "W4.locked.ratio", "  ratio to plain W1 c10", f"{rate / base:.2f}", ">= 0.90", rate / base
    )
    with connect(dsn) as conn:
        conn.execute("TRUNCATE errands._jobs")
        conn.execute("UPDATE errands._queues SET locked_at = NULL, locked_by = NULL")


def w5(dsn: str, sz: Sizes, rep: Report, pgbench: Path) -> dict[int, float]:
    out: dict[int, float] = {}
    clients = 10
    for batch in (1, 50):
        n = sz.w5
        with connect(dsn) as conn:
            conn.execute("DROP TABLE IF EXISTS floor_jobs")
            conn.execute(
                "CREATE TABLE floor_jobs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " payload json NOT NULL DEFAULT '{}', run_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.execute(
                "INSERT INTO floor_jobs (payload) SELECT '{}' FROM generate_series(1, %s)", (n,)
            )
            conn.execute("VACUUM ANALYZE floor_jobs")
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
            f.write(
                "WITH c AS (SELECT id FROM floor_jobs WHERE run_at <= now() ORDER BY id"
                f" LIMIT {batch} FOR UPDATE SKIP LOCKED)\n"
                "DELETE FROM floor_jobs f USING c WHERE f.id = c.id;\n"
            )
            script = f.name
        os.chmod(script, 0o644)
        per_client = max(1, n // batch // clients)
        proc = subprocess.run(
            [
                str(pgbench),
                "-n",
                "-M",
                "prepared",
                "-c",
                str(clients),
                "-j",
                "2",
                "-t",
                str(per_client),
                "-f",
                script,
                dsn,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        os.unlink(script)
        m = re.search(r"tps = ([\d.]+) \(without initial", proc.stdout)
        if proc.returncode != 0 or m is None:
            raise RuntimeError(f"pgbench failed: {proc.stdout}\n{proc.stderr}")
        rate = float(m.group(1)) * batch
        out[batch] = rate
        rep.add(
            f"W5.b{batch}",
            f"floor: pgbench SKIP LOCKED claim+delete {batch}/tx, {clients} clients",
            f"{rate:,.0f} jobs/s",
            "",
            rate,
        )
    with connect(dsn) as conn:
        conn.execute("DROP TABLE floor_jobs")
    return out


def compile_errands() -> None:
    """Byte-compile errands and the bench tasks, as installed from a wheel (pip
    compiles it) and as a second run would find them; else PYTHONDONTWRITEBYTECODE
    (set in some shells) has every worker start compile errands from source (~90 ms
    on these machines)."""
    subprocess.run(
        [PY, "-m", "compileall", "-q", str(Path(errands.__file__).parent), str(TASKS)],
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )


def once_empty(dsn: str, rep: Report) -> None:
    cmd = [ERRANDS_CLI, "worker", "--once", "-c", dsn, "--tasks", str(TASKS), "-j", "10", "--quiet"]
    subprocess.run(cmd, check=True)  # warm-up (file cache), not counted
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        times.append((time.perf_counter() - t0) * 1000)
    med = statistics.median(times)
    rep.add(
        "once.empty",
        "`errands worker --once` on an empty queue, median of 5",
        f"{med:.0f} ms",
        "<= 300 ms",
        {"median_ms": med, "all_ms": times},
    )


# --- peers (--peers): Graphile Worker, PgQueuer, Procrastinate side by side ---------------


@dataclass
class PeerSizes:
    rounds: int
    w1: int  # the same N for every queue, but Procrastinate's
    procrastinate_w1: int  # Procrastinate runs < 1,000 jobs/s: its N is capped
    procrastinate_w3: int


PEERS_QUICK = PeerSizes(3, 10_000, 300, 2_000)
PEERS_FULL = PeerSizes(3, 20_000, 1_000, 10_000)
SYSTEMS = ["errands", "graphile", "pgqueuer", "procrastinate"]
TITLES = {
    "errands": "Errands",
    "graphile": "Graphile Worker",
    "pgqueuer": "PgQueuer",
    "procrastinate": "Procrastinate",
}


def ensure_peer_deps() -> tuple[str, str]:
    """Install the peers on first use; returns (node, the peers' python)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise SystemExit(
            "error: --peers (make bench PEERS=1) needs Node.js >= 20 and npm for Graphile"
            " Worker; install them (e.g. apt-get install nodejs npm) or run without PEERS=1"
        )
    modules = GRAPHILE_DIR / "node_modules"
    stamp = modules / ".bench-installed"
    lock = GRAPHILE_DIR / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        log("installing Graphile Worker (npm ci in bench/peers/graphile)")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=GRAPHILE_DIR, check=True
        )
        stamp.touch()
    vpy = PEERS_VENV / "bin" / "python"
    if not vpy.exists():
        log("creating bench/peers/.venv")
        subprocess.run([PY, "-m", "venv", str(PEERS_VENV)], check=True)
    vstamp = PEERS_VENV / ".bench-installed"
    if not vstamp.exists() or vstamp.stat().st_mtime < PEERS_REQUIREMENTS.stat().st_mtime:
        log("installing PgQueuer and Procrastinate into bench/peers/.venv")
        subprocess.run(
            [str(vpy), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
             str(PEERS_REQUIREMENTS)],
            check=True,
        )  # fmt: skip
        vstamp.touch()
    return node, str(vpy)


@dataclass
class Proc:
    seconds: float
    out: dict[str, Any]
    max_rss_mb: float


def run_proc(cmd: list[str], what: str) -> Proc:
    """Run a process to its exit: wall time from start to exit, last JSON line, max RSS."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    _, status, _ = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stdout is not None
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} exited with {proc.returncode}: {out}")
    got = json.loads(out.strip().splitlines()[-1])
    return Proc(seconds, got, float(got.get("vmhwm_mb", 0.0)))


class Peers:
    """The four queues, each in its own database of the same cluster."""

    def __init__(self, cluster: PgCluster, node: str, vpy: str) -> None:
        self.node = node
        self.vpy = vpy
        self.dsn = {"errands": cluster.dsn()}
        with connect(cluster.dsn()) as conn:
            for name in SYSTEMS[1:]:
                conn.execute(f"CREATE DATABASE bench_{name}")
                self.dsn[name] = cluster.dsn(f"bench_{name}")
        log("installing the peers' schemas")
        subprocess.run(
            [node, str(GRAPHILE_DIR / "run.js"), "migrate", self.dsn["graphile"]], check=True
        )
        for name in ("pgqueuer", "procrastinate"):
            subprocess.run(
                [vpy, str(PEERS_DIR / f"{name}_runner.py"), "install", self.dsn[name]],
                check=True,
                stderr=subprocess.DEVNULL,
            )

    def runner(self, name: str, *args: str) -> list[str]:
        if name == "graphile":
            return [self.node, str(GRAPHILE_DIR / "run.js"), *args]
        return [self.vpy, str(PEERS_DIR / f"{name}_runner.py"), *args]

    def enqueue(self, name: str, n: int) -> float:
        """Bulk-enqueue n no-ops; seconds of the enqueue call."""
        if name in ("errands", "graphile"):
            with connect(self.dsn[name]) as conn:
                if name == "errands":
                    return timed(lambda: enqueue_noops(conn, n))
                return timed(
                    lambda: conn.execute(
                        "SELECT count(*) FROM graphile_worker.add_jobs(ARRAY(SELECT ROW('noop',"
                        " '{}'::json, NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec"
                        " FROM generate_series(1, %s::int)))",
                        (n,),
                    )
                )
        res = run_proc(self.runner(name, "enqueue", self.dsn[name], str(n)), f"{name} enqueue")
        return float(res.out["seconds"])

    def left(self, name: str) -> int:
        """Jobs not done (errands/graphile/pgqueuer delete done jobs)."""
        query = {
            "errands": "SELECT count(*) FROM errands._jobs",
            "graphile": "SELECT count(*) FROM graphile_worker._private_jobs",
            "pgqueuer": "SELECT count(*) FROM pgqueuer",
            "procrastinate": "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'",
        }[name]
        with connect(self.dsn[name]) as conn:
            return int(scalar(conn, query))

    TABLES: ClassVar[dict[str, str]] = {
        "errands": "errands._jobs",
        "graphile": "graphile_worker._private_jobs",
        "pgqueuer": "pgqueuer",
        "procrastinate": "procrastinate_jobs",
    }

    def reset(self, name: str) -> None:
        """Empty the queue (and the peers' logs of done jobs)."""
        extra = {"pgqueuer": ", pgqueuer_log", "procrastinate": " CASCADE"}.get(name, "")
        with connect(self.dsn[name]) as conn:
            conn.execute(f"TRUNCATE {self.TABLES[name]}{extra}")

    def analyze(self, name: str) -> None:
        with connect(self.dsn[name]) as conn:
            conn.execute(f"VACUUM ANALYZE {self.TABLES[name]}")

    def empty(self, name: str, concurrency: int) -> float:
        """Seconds from process start to exit of the W1 worker on an empty queue."""
        self.reset(name)
        if name == "errands":
            res = run_once_workers(self.dsn[name], concurrency)
            seconds, ok = res.seconds, res.ok
        else:
            proc = run_proc(self.runner(name, "once", self.dsn[name], str(concurrency)), name)
            seconds, ok = proc.seconds, proc.out["ok"]
        if ok:
            raise RuntimeError(f"{name} ran {ok} jobs on an empty queue")
        return seconds

    def w1(self, name: str, n: int, concurrency: int) -> Proc:
        """n no-ops enqueued in bulk, one process at `concurrency` until the queue is empty."""
        self.reset(name)
        if name == "errands":
            res = w1_round(self.dsn[name], n, concurrency)
            return Proc(res.seconds, {"ok": res.ok, "distinct": res.distinct}, res.max_rss_mb)
        self.enqueue(name, n)
        self.analyze(name)  # as w1_round does for errands
        proc = run_proc(self.runner(name, "once", self.dsn[name], str(concurrency)), name)
        left = self.left(name)
        out = proc.out
        if out["ok"] != n or out["distinct"] != n or out.get("failed") or left:
            raise RuntimeError(f"{name} W1 check failed (n={n}): {out}, {left} jobs left")
        return proc


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "all": values,
    }


def fmt_spread(s: dict[str, Any], digits: int = 0) -> str:
    f = f"{{:,.{digits}f}}"
    return f"{f.format(s['median'])} ({f.format(s['min'])}-{f.format(s['max'])})"


def peers(cluster: PgCluster, sz: Sizes, psz: PeerSizes, only: set[str]) -> dict[str, Any]:
    """Interleaved rounds of W1 c10 and W3 bulk enqueue for errands and the three peers."""
    node, vpy = ensure_peer_deps()
    p = Peers(cluster, node, vpy)
    c = 10
    n_w1 = dict.fromkeys(SYSTEMS, psz.w1) | {"procrastinate": psz.procrastinate_w1}
    n_w3 = dict.fromkeys(SYSTEMS, sz.w3_bulk) | {"procrastinate": psz.procrastinate_w3}
    w1_rates: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    w1_net: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    w1_empty: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    w1_rss: dict[str, float] = dict.fromkeys(SYSTEMS, 0.0)
    w3_rates: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    w2_lat: dict[str, list[list[float]]] = {"errands": [], "graphile": []}
    w2_n = max(20, sz.w2 // psz.rounds)
    for r in range(psz.rounds):
        order = SYSTEMS[r % len(SYSTEMS) :] + SYSTEMS[: r % len(SYSTEMS)]
        if "W1" in only:
            for name in order:
                empty = p.empty(name, c)
                res = p.w1(name, n_w1[name], c)
                rate = n_w1[name] / res.seconds
                w1_rates[name].append(rate)
                w1_empty[name].append(empty * 1000)
                w1_net[name].append(n_w1[name] / max(res.seconds - empty, 1e-3))
                w1_rss[name] = max(w1_rss[name], res.max_rss_mb)
                log(f"peers W1 round {r + 1}: {name:<13} {rate:>9,.0f} jobs/s")
        if "W3" in only:
            for name in order:
                p.reset(name)
                s = p.enqueue(name, n_w3[name])
                w3_rates[name].append(n_w3[name] / s)
                log(f"peers W3 round {r + 1}: {name:<13} {n_w3[name] / s:>9,.0f} jobs/s")
                p.reset(name)
        if "W2" in only:  # Errands and Graphile only
            for name in [x for x in order if x in w2_lat]:
                if name == "errands":
                    cmd = [PY, str(WORKER), p.dsn[name], str(c), "continuous"]
                    add_sql = ERRANDS_ADD_LATENCY
                else:
                    cmd = p.runner(name, "continuous", p.dsn[name], str(c))
                    add_sql = "SELECT graphile_worker.add_job('latency', %s::json)"
                w2_lat[name].append(latencies(cmd, p.dsn[name], add_sql, w2_n))
                got = percentiles(w2_lat[name][-1])
                ms = f"{got['p50']:.2f}/{got['p99']:.2f}"
                log(f"peers W2 round {r + 1}: {name:<13} p50/p99 {ms} ms")
                p.reset(name)
    out: dict[str, Any] = {"rounds": psz.rounds, "concurrency": c}
    if "W2" in only:
        out["W2"] = {
            name: {
                "n": w2_n * psz.rounds,
                "all": percentiles([x for one in rounds for x in one]),
                "p50": spread([percentiles(one)["p50"] for one in rounds]),
                "p99": spread([percentiles(one)["p99"] for one in rounds]),
            }
            for name, rounds in w2_lat.items()
        }
    if "W1" in only:
        out["W1"] = {
            name: {"n": n_w1[name], "max_rss_mb": w1_rss[name], **spread(w1_rates[name])}
            for name in SYSTEMS
        }
        ratios = [a / b for a, b in zip(w1_rates["errands"], w1_rates["graphile"], strict=True)]
        out["W1"]["ratio_errands_graphile"] = spread(ratios)
        out["W1net"] = {name: {"n": n_w1[name], **spread(w1_net[name])} for name in SYSTEMS}
        ratios = [a / b for a, b in zip(w1_net["errands"], w1_net["graphile"], strict=True)]
        out["W1net"]["ratio_errands_graphile"] = spread(ratios)
        out["W1empty"] = {name: {"n": 0, **spread(w1_empty[name])} for name in SYSTEMS}
        ratios = [a / b for a, b in zip(w1_empty["errands"], w1_empty["graphile"], strict=True)]
        out["W1empty"]["ratio_errands_graphile"] = spread(ratios)
    if "W3" in only:
        out["W3"] = {name: {"n": n_w3[name], **spread(w3_rates[name])} for name in SYSTEMS}
        ratios = [a / b for a, b in zip(w3_rates["errands"], w3_rates["graphile"], strict=True)]
        out["W3"]["ratio_errands_graphile"] = spread(ratios)
    return out


def peers_markdown(res: dict[str, Any]) -> str:
    heads = " | ".join(TITLES[name] for name in SYSTEMS)
    lines = [
        "",
        f"## Side by side (same cluster, {res['rounds']} interleaved rounds, median (min-max))",
        "",
        f"| workload | {heads} | Errands / Graphile | target |",
        "|---|" + "---|" * (len(SYSTEMS) + 2),
    ]
    rows = [
        ("W1", f"W1 jobs/s, 1 process, concurrency {res['concurrency']}", ">= 1.0 (aim 1.5)"),
        ("W1net", "  same, start-up excluded: N / (wall - empty-queue run)", ""),
        ("W1empty", "  the same worker on an empty queue, ms (lower is better)", ""),
        ("W3", "W3 bulk enqueue jobs/s", ">= 1.5"),
    ]
    for key, what, target in rows:
        if key not in res:
            continue
        cells = []
        for name in SYSTEMS:
            cell = fmt_spread(res[key][name])
            if res[key][name]["n"] != res[key]["errands"]["n"] and key != "W1empty":
                cell += f" (N={res[key][name]['n']:,})"
            cells.append(cell)
        ratio = fmt_spread(res[key]["ratio_errands_graphile"], 2)
        n = res[key]["errands"]["n"]
        what = f"{what}, N={n:,}" if n else what
        lines.append(f"| {what} | {' | '.join(cells)} | {ratio} | {target} |")
    if "W2" in res:
        for q in ("p50", "p99"):
            cells = [fmt_spread(res["W2"][name][q], 2) + " ms" for name in ("errands", "graphile")]
            ratio = res["W2"]["errands"][q]["median"] / res["W2"]["graphile"][q]["median"]
            lines.append(
                f"| W2 latency add_job -> start, {q} of each round ({res['W2']['errands']['n']:,}"
                f" jobs, 10 ms apart) | {' | '.join(cells)} | - | - | {ratio:.2f} (medians) |"
                f" {'<= 2 ms' if q == 'p50' else '<= 4 ms'} |"
            )
    if "W1" in res:
        rss = " | ".join(f"{res['W1'][name]['max_rss_mb']:.0f} MB" for name in SYSTEMS)
        lines.append(f"| W1 worker max RSS | {rss} |  |  |")
    lines += [
        "",
        "W1: jobs/s = N / (worker process start .. exit), the queue filled by one bulk call"
        " beforehand; every job checked done exactly once; the start-up-excluded row subtracts"
        " the same round's empty-queue run, as Graphile's perfTest does.  Procrastinate's N"
        " is capped (it runs well under 1,000 jobs/s).  W3: one bulk call; Errands and Graphile"
        " `add_jobs` from SQL (generate_series), PgQueuer `Queries.enqueue` with lists,"
        " Procrastinate `Task.batch_defer_async` (the call alone).  Configurations:"
        " bench/README.md.  Ratios are per round (same round, same machine state).",
    ]
    return "\n".join(lines) + "\n"


# --- output ----------------------------------------------------------------------------


def markdown(info: dict[str, Any], rep: Report, mode: str) -> str:
    s = info["settings"]
    lines = [
        f"# Errands benchmark ({mode})",
        "",
        f"- date: {info['date']}",
        f"- command: `{info['command']}`",
        f"- machine: {info['nproc']} CPUs, {info['cpu']}; Python {info['python']}",
        f"- PostgreSQL: {info['postgresql']}",
        "- settings: "
        + ", ".join(f"{k}={v}" for k, v in s.items())
        + f"; data dir on {info['data_fs']}",
        "",
        "| id | measure | result | target |",
        "|---|---|---|---|",
    ]
    lines += [f"| {k} | {w} | {v} | {t} |" for k, w, v, t in rep.rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (< 2 minutes)")
    parser.add_argument("--only", default="W1,W2,W3,W4,W5,once", help="comma-separated workloads")
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also run W1 c10, W2 and W3 side by side with Graphile Worker, PgQueuer and"
        " Procrastinate (W2: Graphile only)",
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the cluster is stopped and removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sz = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"
    only = set(args.only.split(","))
    rep = Report()
    if args.peers:
        ensure_peer_deps()  # fail early, before the cluster starts
    peer_res: dict[str, Any] = {}
    with durable_cluster() as cluster:
        dsn = cluster.dsn()
        with connect(dsn) as conn:
            errands.install(conn)
            conn.execute("SELECT errands.add_job(identifier => 'noop')")  # registers the tasks
            conn.execute("SELECT errands.add_job(identifier => 'latency', payload => '{\"t\": 0}')")
            conn.execute("TRUNCATE errands._jobs")
            info = machine_info(conn, cluster)
        print(f"settings: {info['settings']} (data dir on {info['data_fs']})", flush=True)
        compile_errands()  # every workload, not only once.empty, starts compiled
        base = 0.0
        if "once" in only:
            log("--once on an empty queue")
            once_empty(dsn, rep)
        if "W1" in only or "W4" in only:
            log("W1 throughput")
            base = w1(dsn, sz, rep)
        if "W2" in only:
            log("W2 latency")
            w2(dsn, sz, rep)
        if "W3" in only:
            log("W3 enqueue")
            w3(dsn, sz, rep)
        if "W4" in only:
            log("W4 scale")
            w4(dsn, sz, rep, base)
        if "W5" in only:
            log("W5 floor")
            floor = w5(dsn, sz, rep, cluster.bindir / "pgbench")
            if base:
                rep.add(
                    "W1/W5.b50",
                    "W1 c10 / pgbench 50-per-tx floor",
                    f"{base / floor[50]:.0%}",
                    ">= 45%",
                    base / floor[50],
                )
        if args.peers and only & {"W1", "W2", "W3"}:
            log("peers side by side")
            peer_res = peers(cluster, sz, PEERS_QUICK if args.quick else PEERS_FULL, only)
    md = markdown(info, rep, mode)
    if peer_res:
        md += peers_markdown(peer_res)
    out_dir = BENCH / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (out_dir / f"{stamp}.md").write_text(md)
    (out_dir / f"{stamp}.json").write_text(
        json.dumps({"mode": mode, "info": info, "results": rep.data, "peers": peer_res}, indent=2)
    )
    print()
    print(md)
    print(f"wrote bench/results/{stamp}.md and .json")


if __name__ == "__main__":
    main()

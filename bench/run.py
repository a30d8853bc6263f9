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
from typing import Any

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
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        rss = max(rss, usage.ru_maxrss / 1024.0)
        assert proc.stdout is not None
        out = proc.stdout.read()
        if proc.returncode != 0:
            raise RuntimeError(f"worker exited with {proc.returncode}: {out}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
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


def w2(dsn: str, sz: Sizes, rep: Report) -> None:
    with tempfile.NamedTemporaryFile("r", suffix=".lat", delete=False) as tmp:
        path = Path(tmp.name)
    env = {**os.environ, "BENCH_LATENCY_FILE": str(path)}
    proc = subprocess.Popen(
        [PY, str(WORKER), dsn, "10", "continuous"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "READY":
            raise RuntimeError("W2 worker did not start")
        time.sleep(1.0)  # let it go idle
        with connect(dsn) as conn:
            conn.execute("SELECT 1")
            for _ in range(sz.w2):
                conn.execute(
                    "SELECT errands.add_job(identifier => 'latency', payload => %s::json)",
                    (Json({"t": time.time()}),),
                )
                time.sleep(0.010)
        deadline = time.time() + 30
        lat: list[float] = []
        while time.time() < deadline:
            lat = [float(x) for x in path.read_text().split()]
            if len(lat) >= sz.w2:
                break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        path.unlink(missing_ok=True)
    if len(lat) != sz.w2:
        raise RuntimeError(f"W2: {len(lat)} of {sz.w2} latencies recorded ({out})")
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, round(p / 100 * (len(lat) - 1)))]

    stats = {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": lat[-1]}
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


def once_empty(dsn: str, rep: Report) -> None:
    # As installed from a wheel (pip compiles it) and as a second run would find the
    # tasks module: compiled once here, else PYTHONDONTWRITEBYTECODE (set in some
    # shells) has every run compile errands from source (~90 ms on these machines).
    subprocess.run(
        [PY, "-m", "compileall", "-q", str(Path(errands.__file__).parent), str(TASKS)],
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )
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
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the cluster is stopped and removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sz = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"
    only = set(args.only.split(","))
    rep = Report()
    with durable_cluster() as cluster:
        dsn = cluster.dsn()
        with connect(dsn) as conn:
            errands.install(conn)
            conn.execute("SELECT errands.add_job(identifier => 'noop')")  # registers the tasks
            conn.execute("SELECT errands.add_job(identifier => 'latency', payload => '{\"t\": 0}')")
            conn.execute("TRUNCATE errands._jobs")
            info = machine_info(conn, cluster)
        print(f"settings: {info['settings']} (data dir on {info['data_fs']})", flush=True)
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
    md = markdown(info, rep, mode)
    out_dir = BENCH / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (out_dir / f"{stamp}.md").write_text(md)
    (out_dir / f"{stamp}.json").write_text(
        json.dumps({"mode": mode, "info": info, "results": rep.data}, indent=2)
    )
    print()
    print(md)
    print(f"wrote bench/results/{stamp}.md and .json")


if __name__ == "__main__":
    main()

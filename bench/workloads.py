"""The benchmark's workloads W1-W5 and `--once` on an empty queue (bench/README.md)."""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from psycopg.conninfo import make_conninfo
from psycopg.types.json import Json

import errands
from bench.common import (
    ERRANDS_CLI,
    PY,
    TASKS,
    WORKER,
    Report,
    Sizes,
    connect,
    enqueue_noops,
    jobs_count,
    scalar,
    w1_round,
)


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
    # Peer runners take the file as their last argument; bench/worker.py reads it
    # from the environment (its fifth argument is the poll interval).
    args = cmd if cmd[1:2] == [str(WORKER)] else [*cmd, str(path)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
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


def w4(dsn: str, sz: Sizes, rep: Report, rounds: int) -> None:
    """W1 c10 in a database with a large backlog of rows no worker may fetch, and in
    one with jobs behind locked named queues, each compared with plain W1 c10 in a
    third new database of the same cluster, the three interleaved round by round (the
    order rotates): the median of the per-round ratios."""
    extra = sz.w4_extra
    third = extra // 3
    # Three new databases alike but for their rows: the bench's own has a history.
    dbs = {name: w4_database(dsn, name) for name in ("plain", "extra", "locked")}
    try:
        with connect(dbs["extra"]) as conn:
            noop = scalar(conn, "SELECT id FROM errands._tasks WHERE identifier = 'noop'")
            unknown = scalar(
                conn, "SELECT id FROM errands._tasks WHERE identifier = 'unknown_task'"
            )
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
        with connect(dbs["locked"]) as conn:
            half = sz.w4_locked // 2
            enqueue_noops(conn, half, "bench-q1")
            enqueue_noops(conn, sz.w4_locked - half, "bench-q2")
            got = conn.execute(
                "SELECT id FROM errands.get_jobs('fake-worker', ARRAY['noop'], 2)"
            ).fetchall()
            assert len(got) == 2, got
            conn.execute("VACUUM ANALYZE errands._jobs")
        rates: dict[str, list[float]] = {name: [] for name in dbs}
        names = list(dbs)
        for r in range(rounds):
            for name in names[r % 3 :] + names[: r % 3]:
                # The extra rows and the locked queues' jobs stay: none is ours to run.
                res = w1_round(dbs[name], sz.w1, 10)
                rates[name].append(sz.w1 / res.seconds)
        fetch = fetch_cost(dbs["plain"], dbs["extra"])
    finally:
        with connect(dsn) as conn:
            for name in dbs:
                conn.execute(f"DROP DATABASE IF EXISTS bench_w4_{name} WITH (FORCE)")
    plain = rates["plain"]
    rep.add(
        "W4.plain",
        f"plain W1 c10, interleaved with the two below ({rounds} rounds, median)",
        f"{statistics.median(plain):,.0f} jobs/s",
        "",
        plain,
    )
    rep.add(
        "W4.fetch",
        "  one get_jobs(10) call, 20,000 runnable: with the extra rows / without, median",
        f"{fetch['extra']:.3f} / {fetch['plain']:.3f} ms = {fetch['extra'] / fetch['plain']:.2f}",
        "",
        fetch,
    )
    for name, what in (
        ("extra", f"W1 c10 with {extra:,} extra rows (scheduled/failed/unknown task)"),
        ("locked", f"W1 c10 with {sz.w4_locked:,} jobs behind 2 locked named queues"),
    ):
        ratios = [x / p for x, p in zip(rates[name], plain, strict=True)]
        rep.add(
            f"W4.{name}", what, f"{statistics.median(rates[name]):,.0f} jobs/s", "", rates[name]
        )
        rep.add(
            f"W4.{name}.ratio",
            "  ratio to plain W1 c10 of the same round, median (min-max)",
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
            ">= 0.90",
            ratios,
        )


def fetch_cost(plain: str, extra: str, calls: int = 300) -> dict[str, float]:
    """One ``get_jobs(..., 10)`` call (rolled back) with 20,000 runnable jobs, in the
    plain database and in the one with the extra rows, alternating call by call:
    the median ms of each (the first 50 calls of each left out: warm-up)."""
    times: dict[str, list[float]] = {"plain": [], "extra": []}
    conns = {"plain": connect(plain), "extra": connect(extra)}
    try:
        for conn in conns.values():
            enqueue_noops(conn, 20_000)
            conn.execute("VACUUM ANALYZE errands._jobs")
            conn.autocommit = False
        query = "SELECT count(*) FROM errands.get_jobs('bench-fetch', ARRAY['noop'], 10)"
        for _ in range(calls):
            for name, conn in conns.items():
                t0 = time.perf_counter()
                conn.execute(query, prepare=True).fetchone()
                times[name].append(time.perf_counter() - t0)
                conn.rollback()
    finally:
        for conn in conns.values():
            conn.close()
    return {name: statistics.median(t[50:]) * 1000 for name, t in times.items()}


def w4_database(dsn: str, name: str) -> str:
    """A new database of the cluster with errands installed and the bench's tasks."""
    with connect(dsn) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS bench_w4_{name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE bench_w4_{name}")
    db = make_conninfo(dsn, dbname=f"bench_w4_{name}")
    with connect(db) as conn:
        errands.install(conn)
        conn.execute(
            "INSERT INTO errands._tasks (identifier) VALUES ('noop'), ('unknown_task')"
            " ON CONFLICT DO NOTHING"
        )
    return db


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

"""`idle`: many idle workers and a trickle of jobs (the thundering herd).

N continuous worker processes (``bench/worker.py``, concurrency 10) wait idle; jobs
are added one by one (``SELECT errands.add_job(...)``, one transaction each) at a
fixed rate; each job's task records its add -> start latency.  Counted server-side:
the calls of ``errands.get_jobs`` (``pg_stat_user_functions`` with
``track_functions = 'pl'`` set for the run's sessions), from before the workers
start until after they exited (start-up, polls and shutdown fetches included).
The same run with one worker is interleaved with the N-worker run, round by round,
so the latency ratio compares like with like.

Standalone: ``python bench/idle_workers.py [--workers 16] [--jobs 1000] [--rate 200]``
(own durable cluster, as ``bench/run.py``).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from psycopg.types.json import Json

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import PY, WORKER, Report, connect, durable_cluster, log, scalar  # noqa: E402
from bench.workloads import ERRANDS_ADD_LATENCY, percentiles  # noqa: E402

GET_JOBS_CALLS = (
    "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions"
    " WHERE schemaname = 'errands' AND funcname = 'get_jobs'"
)


def get_jobs_calls(dsn: str) -> int:
    with connect(dsn) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return int(scalar(conn, GET_JOBS_CALLS))


def trickle(dsn: str, workers: int, jobs: int, rate: float) -> dict[str, Any]:
    """Start ``workers`` idle workers, add ``jobs`` one by one at ``rate``/s, stop them;
    returns the latencies' percentiles and the get_jobs calls per job."""
    with tempfile.NamedTemporaryFile("r", suffix=".lat", delete=False) as tmp:
        path = Path(tmp.name)
    env = {**os.environ, "BENCH_LATENCY_FILE": str(path)}
    before = get_jobs_calls(dsn)
    cmd = [PY, str(WORKER), dsn, "10", "continuous"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(workers)
    ]
    lat: list[float] = []
    outs: list[str] = []
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "READY":
                raise RuntimeError("idle bench: a worker did not start")
        time.sleep(1.0)  # let them go idle
        with connect(dsn) as conn:
            conn.execute("SELECT 1")
            t0 = time.perf_counter()
            for i in range(jobs):
                # A fixed schedule: the rate holds whatever each call costs.
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                conn.execute(ERRANDS_ADD_LATENCY, (Json({"t": time.time()}),))
        deadline = time.time() + 30
        while time.time() < deadline:
            lat = [float(x) for x in path.read_text().split()]
            if len(lat) >= jobs:
                break
            time.sleep(0.1)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            outs.append(out)
        path.unlink(missing_ok=True)
    if len(lat) != jobs:
        raise RuntimeError(f"idle bench: {len(lat)} of {jobs} latencies recorded ({outs})")
    # The workers' backends flush their function statistics as they exit.
    calls = 0
    for _ in range(50):
        calls = get_jobs_calls(dsn) - before
        time.sleep(0.1)
        if get_jobs_calls(dsn) - before == calls:
            break
    return {**percentiles(lat), "calls": calls, "per_job": calls / jobs}


def idle_workers(
    dsn: str, rep: Report, workers: int = 16, jobs: int = 1000, rate: float = 200.0, rounds: int = 2
) -> None:
    with connect(dsn) as conn:
        conn.execute("TRUNCATE errands._jobs")
        db = scalar(conn, "SELECT current_database()")
        conn.execute(f"ALTER DATABASE \"{db}\" SET track_functions = 'pl'")
    try:
        one: list[dict[str, Any]] = []
        many: list[dict[str, Any]] = []
        for r in range(rounds):
            for n, into in (
                ((1, one), (workers, many)) if r % 2 == 0 else ((workers, many), (1, one))
            ):
                res = trickle(dsn, n, jobs, rate)
                log(
                    f"idle round {r + 1}: {n:>2} worker(s): p50 {res['p50']:.2f} ms,"
                    f" {res['calls']} get_jobs calls ({res['per_job']:.2f} per job)"
                )
                into.append(res)
    finally:
        with connect(dsn) as conn:
            conn.execute(f'ALTER DATABASE "{db}" RESET track_functions')
    per_job = statistics.median(m["per_job"] for m in many)
    p50_one = statistics.median(o["p50"] for o in one)
    p50_many = statistics.median(m["p50"] for m in many)
    ratios = [m["p50"] / o["p50"] for m, o in zip(many, one, strict=True)]
    ratio = statistics.median(ratios)
    what = f"{jobs:,} add_job one by one at {rate:.0f}/s, {rounds} rounds"
    rep.add(
        "idle.fetches",
        f"get_jobs calls per job, {workers} idle workers ({what})",
        f"{per_job:.2f}",
        "<= 2",
        {"many": many, "one": one},
    )
    rep.add(
        "idle.p50",
        f"add->start p50 {workers} workers / 1 worker, per round: median (min-max)",
        f"{ratio:.2f} ({min(ratios):.2f}-{max(ratios):.2f}); {p50_many:.2f} / {p50_one:.2f} ms",
        "<= 1.20",
        ratio,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import errands

    with durable_cluster() as cluster:
        dsn = cluster.dsn()
        with connect(dsn) as conn:
            errands.install(conn)
            conn.execute("SELECT errands.add_job(identifier => 'latency', payload => '{\"t\": 0}')")
        rep = Report()
        idle_workers(dsn, rep, args.workers, args.jobs, args.rate, args.rounds)


if __name__ == "__main__":
    main()

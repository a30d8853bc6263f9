"""The fetch's commit with and without waiting for its WAL flush (issue 17).

``python bench/async_fetch.py [--rounds R] [--jobs N] [--w1 N]`` starts a throwaway
durable cluster (as bench/run.py) and alternates, round by round, the bench worker
with ``fetch_async_commit=False`` (``BENCH_FETCH_ASYNC=0``: every fetch waits for
its flush, the behaviour before) and ``True`` (the default): W2 (add_job -> task
start, N jobs 10 ms apart, one continuous worker) and W1 (N no-ops, one run-once
worker at concurrency 10).  Prints per-variant medians of the per-round figures
and the median of the per-round ratios (async / sync).  First, the call itself:
``add_job`` then one ``get_jobs(..., 1, NULL, async_commit)`` timed, the two
variants alternating call by call (``--calls`` each), then the job completed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

import errands
from bench.common import PY, WORKER, connect, durable_cluster, log, w1_round
from bench.workloads import ERRANDS_ADD_LATENCY, latencies, percentiles


def fetch_calls(conn: psycopg.Connection[Any], n: int) -> dict[str, list[float]]:
    """The get_jobs call's round trip (ms), sync and async alternating call by call."""
    out: dict[str, list[float]] = {"sync": [], "async": []}
    for i in range(2 * n):
        variant = "async" if i % 2 else "sync"
        conn.execute("SELECT errands.add_job(identifier => 'noop')")
        t0 = time.perf_counter()
        got = conn.execute(
            "SELECT id FROM errands.get_jobs('ab', '{noop}', 1, NULL, %s)", (variant == "async",)
        ).fetchall()
        out[variant].append((time.perf_counter() - t0) * 1000.0)
        if len(got) != 1:
            raise RuntimeError(f"get_jobs took {len(got)} jobs, expected 1")
        conn.execute("SELECT errands.worker_complete_jobs('ab', %s)", ([got[0][0]],))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=500, help="W2 jobs per round")
    parser.add_argument("--w1", type=int, default=20000, help="W1 jobs per round")
    parser.add_argument("--calls", type=int, default=1000, help="get_jobs calls per variant")
    args = parser.parse_args()
    p50: dict[str, list[float]] = {"sync": [], "async": []}
    p99: dict[str, list[float]] = {"sync": [], "async": []}
    rate: dict[str, list[float]] = {"sync": [], "async": []}
    with durable_cluster() as cluster:
        dsn = cluster.dsn()
        with connect(dsn) as conn:
            errands.install(conn)
            conn.execute("SELECT errands.add_job(identifier => 'noop')")
            conn.execute("SELECT errands.add_job(identifier => 'latency', payload => '{\"t\": 0}')")
            conn.execute("TRUNCATE errands._jobs")
            calls = fetch_calls(conn, args.calls)
        for variant in ("sync", "async"):
            got = percentiles(calls[variant])
            print(
                f"get_jobs call {variant:>5}: p50 {got['p50']:.3f} ms, p90 {got['p90']:.3f} ms,"
                f" p99 {got['p99']:.3f} ms",
                flush=True,
            )
        os.environ["BENCH_WORKER_INSTALL"] = "0"
        for r in range(args.rounds):
            order = ["sync", "async"] if r % 2 == 0 else ["async", "sync"]
            for variant in order:
                os.environ["BENCH_FETCH_ASYNC"] = "1" if variant == "async" else "0"
                cmd = [PY, str(WORKER), dsn, "10", "continuous"]
                got = percentiles(latencies(cmd, dsn, ERRANDS_ADD_LATENCY, args.jobs))
                p50[variant].append(got["p50"])
                p99[variant].append(got["p99"])
                res = w1_round(dsn, args.w1, 10)
                rate[variant].append(args.w1 / res.seconds)
                log(
                    f"round {r + 1} {variant:>5}: W2 p50 {got['p50']:.2f} p99 {got['p99']:.2f} ms,"
                    f" W1 {rate[variant][-1]:,.0f} jobs/s"
                )
    if not args.rounds:
        return
    for name, values in (("W2 p50 ms", p50), ("W2 p99 ms", p99), ("W1 jobs/s", rate)):
        ratios = [a / s for a, s in zip(values["async"], values["sync"], strict=True)]
        print(
            f"{name:<10} sync {statistics.median(values['sync']):>10,.2f}"
            f"  async {statistics.median(values['async']):>10,.2f}"
            f"  async/sync per round: median {statistics.median(ratios):.2f}"
            f" ({min(ratios):.2f}-{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()

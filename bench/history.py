"""Finished-job history figures (issue 12): ``python bench/history.py [--rounds N]``.

On a throwaway durable cluster (as bench/run.py):

* **W1 by retention**: W1 c10 rounds (``--n`` no-ops, one ``--once`` worker)
  interleaved between the default retention (1 hour: every completion moves its
  row into ``errands._finished_jobs``) and retention 0 (the plain DELETE path);
  prints each round and the medians.
* **fetch latency while pruning**: ``get_jobs`` of 10 jobs (each batch then
  completed, untimed), p50/p99, first with no pruning, then while another
  session prunes ``--prune-rows`` expired finished rows with
  ``prune_finished_jobs(10000)`` until a call returns less.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Report,
    connect,
    durable_cluster,
    enqueue_noops,
    install_database,
    log,
    w1_round,
)
from bench.workloads import compile_errands


def w1_by_retention(dsn: str, rounds: int, n: int) -> dict[str, list[float]]:
    """W1 c10 jobs/s by retention ("1 hour", "0"), rounds interleaved."""
    rates: dict[str, list[float]] = {"1 hour": [], "0": []}
    for r in range(rounds):
        for retention in ("1 hour", "0") if r % 2 == 0 else ("0", "1 hour"):
            with connect(dsn) as conn:
                conn.execute("SELECT errands.set_retention(%s::interval)", [retention])
            res = w1_round(dsn, n, 10)
            rates[retention].append(n / res.seconds)
            print(f"  round {r + 1} retention {retention:>6}: {n / res.seconds:,.0f} jobs/s",
                  flush=True)  # fmt: skip
    for retention, values in rates.items():
        print(f"W1 c10 retention {retention:>6}: median {statistics.median(values):,.0f} jobs/s"
              f" over {len(values)} rounds", flush=True)  # fmt: skip
    with connect(dsn) as conn:
        conn.execute("SELECT errands.set_retention('0')")
        conn.execute("TRUNCATE errands._finished_jobs")
    return rates


def history_row(dsn: str, rounds: int, n: int, rep: Report) -> None:
    """make bench's row: W1 with a retention of 1 hour vs 0 (the default), interleaved."""
    rates = w1_by_retention(dsn, rounds, n)
    on, off = statistics.median(rates["1 hour"]), statistics.median(rates["0"])
    rep.add(
        "history",
        f"W1 c10, retention 1 hour / retention 0 (the default), jobs/s, {rounds} rounds each",
        f"{on:,.0f} / {off:,.0f} ({on / off:.2f}x)",
        "",
        {"retention_1h": on, "retention_0": off},
    )


def _fetch_latencies(dsn: str, seconds: float, stop: threading.Event | None) -> list[float]:
    out: list[float] = []
    with connect(dsn) as conn:
        conn.execute("SELECT errands.set_retention('0')")  # keep the history table as filled
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end and not (stop is not None and stop.is_set()):
            t0 = time.perf_counter()
            cur = conn.execute("SELECT id FROM errands.get_jobs('bench-w', ARRAY['noop'], 10)")
            ids = [r[0] for r in cur.fetchall()]
            out.append(time.perf_counter() - t0)
            conn.execute("SELECT errands.worker_complete_jobs('bench-w', %s::bigint[])", [ids])
    return out


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] * 1000


def _report(what: str, values: list[float]) -> None:
    p50, p99 = _pct(values, 0.5), _pct(values, 0.99)
    print(f"get_jobs(10) {what}: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({len(values):,} calls)")


def prune_latency(dsn: str, rows: int, seconds: float) -> None:
    with connect(dsn) as conn:
        enqueue_noops(conn, 200_000)
        log(f"inserting {rows:,} expired finished jobs")
        conn.execute(
            "INSERT INTO errands._finished_jobs (id, task_identifier, payload, priority, attempts,"
            " max_attempts, created_at, finished_at, state, result)"
            " SELECT -i, 'noop', '{}', 0, 1, 25, now(), now() - interval '2 hours', 'completed',"
            " '{\"ok\": true}' FROM generate_series(1, %s) i",
            [rows],
        )
        conn.execute("VACUUM ANALYZE errands._jobs")
        conn.execute("VACUUM ANALYZE errands._finished_jobs")
    base = _fetch_latencies(dsn, seconds, None)
    _report("without pruning", base)
    with connect(dsn) as conn:
        conn.execute("SELECT errands.set_retention('1 hour')")
    done = threading.Event()
    pruned = [0, 0.0]

    def prune() -> None:
        t0 = time.perf_counter()
        with connect(dsn) as conn:
            while True:
                row = conn.execute("SELECT errands.prune_finished_jobs(10000)").fetchone()
                pruned[0] += row[0] if row else 0
                if not row or row[0] < 10000:
                    break
        pruned[1] = time.perf_counter() - t0
        done.set()

    thread = threading.Thread(target=prune)
    thread.start()
    during = _fetch_latencies(dsn, 3600.0, done)
    thread.join()
    print(f"pruned {pruned[0]:,} rows in {pruned[1]:.1f} s (calls of 10,000)", flush=True)
    _report("while pruning", during)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6, help="W1 rounds per retention")
    parser.add_argument("--n", type=int, default=20_000, help="no-ops per W1 round")
    parser.add_argument("--prune-rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-seconds", type=float, default=20.0)
    parser.add_argument("--skip-w1", action="store_true")
    parser.add_argument("--skip-prune", action="store_true")
    args = parser.parse_args()
    with durable_cluster() as cluster:
        dsn = cluster.dsn()
        install_database(dsn)
        compile_errands()
        if not args.skip_w1:
            log("W1 c10, retention 1 hour vs 0, interleaved")
            w1_by_retention(dsn, args.rounds, args.n)
        if not args.skip_prune:
            log("fetch latency while pruning")
            prune_latency(dsn, args.prune_rows, args.baseline_seconds)


if __name__ == "__main__":
    main()

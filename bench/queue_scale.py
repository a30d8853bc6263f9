"""Fetch and enqueue cost with many named queues (issue 17): ``python bench/queue_scale.py``.

On a throwaway durable cluster (as bench/run.py), databases ``before`` (the schema of
``--before-ref``, default: the merge base with main) and ``after`` (this checkout's):

* **serial** (``after``): W1 c10 of ``--n`` no-ops without a queue vs the same number
  spread over ``--n``/2 serial queues (2 jobs each), interleaved round by round; the
  ratio of medians (target >= 0.5).
* **enqueue** (both): blocks alternating between the databases: one bulk ``add_jobs``
  of ``--bulk`` plain specs (W3), the same spread over ``--bulk``/2 named queues, and
  ``--single`` one-by-one ``add_job`` calls, plain and into 100 named queues; after /
  before time, median over the blocks (> 1: after is slower).

``bench/flow_control.py`` has the other figures: ``get_jobs`` ms by number of queues
(before vs after), W1 without limits before vs after, W1 with held-back work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.common import (
    ROOT,
    connect,
    create_database,
    durable_cluster,
    jobs_count,
    log,
    run_once_workers,
)

BULK = (
    "SELECT count(*) FROM errands.add_jobs(ARRAY(SELECT ROW('noop', NULL,"
    " CASE WHEN %(queues)s::int > 0 THEN 'q' || g %% greatest(%(queues)s::int, 1) END,"
    " NULL, NULL, NULL, NULL, NULL)::errands.job_spec FROM generate_series(1, %(n)s::int) g))"
)


def _reset(conn: psycopg.Connection[Any]) -> None:
    conn.execute("TRUNCATE errands._jobs")
    conn.execute("DELETE FROM errands._queues")


def w1_serial_round(dsn: str, n: int, queues: int) -> float:
    """jobs/s of one W1 c10 round over ``queues`` serial queues (0: no queue)."""
    with connect(dsn) as conn:
        _reset(conn)
        conn.execute(BULK, {"n": n, "queues": queues})
        conn.execute("VACUUM ANALYZE errands._jobs")
        conn.execute("VACUUM ANALYZE errands._queues")
    res = run_once_workers(dsn, 10)
    with connect(dsn) as conn:
        left = jobs_count(conn)
    if res.ok != n or res.distinct != n or res.failed or left:
        raise RuntimeError(
            f"W1 exactly-once check failed: ok={res.ok} distinct={res.distinct}"
            f" failed={res.failed} left={left} (n={n}, queues={queues})"
        )
    return n / res.seconds


def serial(dsn: str, rounds: int, n: int) -> None:
    rates: dict[str, list[float]] = {"plain": [], "serial": []}
    for r in range(rounds):
        for name in ("plain", "serial") if r % 2 == 0 else ("serial", "plain"):
            rate = w1_serial_round(dsn, n, n // 2 if name == "serial" else 0)
            rates[name].append(rate)
            print(f"  round {r + 1} {name:>6}: {rate:,.0f} jobs/s", flush=True)
    med = {name: statistics.median(v) for name, v in rates.items()}
    print(f"W1 c10, {n:,} jobs over {n // 2:,} serial queues (2 each): {med['serial']:,.0f}"
          f" jobs/s vs {med['plain']:,.0f} without queues: {med['serial'] / med['plain']:.3f}"
          f" (target >= 0.5; {rounds} rounds)", flush=True)  # fmt: skip


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _singles(conn: psycopg.Connection[Any], count: int, queues: int) -> None:
    for i in range(count):
        conn.execute(
            "SELECT errands.add_job(identifier => %s::text, queue_name => %s)",
            ("noop", f"s{i % queues}" if queues else None),
            prepare=True,
        )


def _enqueue_block(conn: psycopg.Connection[Any], bulk: int, single: int) -> dict[str, float]:
    """Seconds of each enqueue kind on one database."""
    took = {}
    for key, run in (
        ("bulk", lambda: conn.execute(BULK, {"n": bulk, "queues": 0})),
        ("bulk_queues", lambda: conn.execute(BULK, {"n": bulk, "queues": bulk // 2})),
        ("single", lambda: _singles(conn, single, 0)),
        ("single_queues", lambda: _singles(conn, single, 100)),
    ):
        _reset(conn)
        took[key] = _timed(run)
    _reset(conn)
    return took


def enqueue(dsns: dict[str, str], blocks: int, bulk: int, single: int) -> None:
    conns = {name: connect(dsn) for name, dsn in dsns.items()}
    times: dict[str, dict[str, list[float]]] = {
        name: {"bulk": [], "bulk_queues": [], "single": [], "single_queues": []} for name in dsns
    }
    try:
        for b in range(blocks):
            for name in list(conns) if b % 2 == 0 else list(conns)[::-1]:
                for key, seconds in _enqueue_block(conns[name], bulk, single).items():
                    times[name][key].append(seconds)
        labels = {
            "bulk": f"bulk add_jobs, {bulk:,} plain specs (W3)",
            "bulk_queues": f"bulk add_jobs, {bulk:,} specs over {bulk // 2:,} named queues",
            "single": f"{single:,} single add_job calls, plain",
            "single_queues": f"{single:,} single add_job calls, 100 named queues",
        }
        for key, label in labels.items():
            ratios = [a / b for a, b in zip(times["after"][key], times["before"][key], strict=True)]
            after = statistics.median(times["after"][key])
            before = statistics.median(times["before"][key])
            print(f"{label}: after {after * 1000:,.0f} ms, before {before * 1000:,.0f} ms;"
                  f" time after / before median {statistics.median(ratios):.3f}"
                  f" over {blocks} interleaved blocks", flush=True)  # fmt: skip
    finally:
        for conn in conns.values():
            _reset(conn)
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller sizes")
    parser.add_argument("--before-ref", default=None, help="git ref of the 'before' schema")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--n", type=int, default=None, help="no-ops per W1 round (20,000)")
    parser.add_argument("--only", default="serial,enqueue", help="comma-separated: serial,enqueue")
    args = parser.parse_args()
    ref = (
        args.before_ref
        or subprocess.run(
            ["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True,
            check=True,
        ).stdout.strip()
    )  # fmt: skip
    before_sql = subprocess.run(
        ["git", "show", f"{ref}:sql/install.sql"], cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    rounds = args.rounds or (3 if args.quick else 6)
    n = args.n or (10_000 if args.quick else 20_000)
    only = set(args.only.split(","))
    os.environ["BENCH_WORKER_INSTALL"] = "0"  # never upgrade the "before" database
    with durable_cluster() as cluster:
        after = create_database(cluster, "scale_after", None)
        if "serial" in only:
            log(f"W1 c10: {n:,} jobs without queues vs over {n // 2:,} serial queues")
            serial(after, rounds, n)
        if "enqueue" in only:
            log(f"enqueue cost: before ({ref[:10]}) vs after, interleaved")
            before = create_database(cluster, "scale_before", before_sql)
            enqueue(
                {"before": before, "after": after},
                blocks=6 if args.quick else 12,
                bulk=20_000,
                single=500 if args.quick else 2_000,
            )


if __name__ == "__main__":
    main()

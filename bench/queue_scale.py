"""Fetch and enqueue cost with many named queues (issue 17): ``python bench/queue_scale.py``.

On a throwaway durable cluster (as bench/run.py), databases ``before`` (the schema of
``--before-ref``, default: the merge base with main) and ``after`` (this checkout's):

* **serial** (both): W1 c10 of ``--n`` no-ops without a queue vs the same number
  spread over ``--n``/2 serial queues (2 jobs each), on both databases, interleaved
  round by round; per database the ratio of medians (target >= 0.5), and after /
  before jobs/s of each kind (median of the per-round ratios).
* **enqueue** (both): blocks alternating between the databases: one bulk ``add_jobs``
  of ``--bulk`` plain specs (W3), the same spread over ``--bulk``/2 named queues, and
  ``--single`` one-by-one ``add_job`` calls, plain and into 100 named queues; after /
  before time, median over the blocks (> 1: after is slower).

* **sql** (both): ``get_jobs`` and ``worker_complete_jobs`` microseconds per job in
  one session (batches of 32, ``--n``/2 jobs), plain and over serial queues, both
  databases interleaved: the functions' own cost, without the worker processes.

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


def serial(dsns: dict[str, str], rounds: int, n: int) -> None:
    """W1 plain vs serial queues on each database, every combination once a round."""
    runs = [(db, kind) for db in dsns for kind in ("plain", "serial")]
    rates: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
    for r in range(rounds):
        for db, kind in runs if r % 2 == 0 else runs[::-1]:
            rate = w1_serial_round(dsns[db], n, n // 2 if kind == "serial" else 0)
            rates[(db, kind)].append(rate)
            print(f"  round {r + 1} {db:>6} {kind:>6}: {rate:,.0f} jobs/s", flush=True)
    for db in dsns:
        plain = statistics.median(rates[(db, "plain")])
        queued = statistics.median(rates[(db, "serial")])
        print(f"{db}: W1 c10, {n:,} jobs over {n // 2:,} serial queues (2 each): {queued:,.0f}"
              f" jobs/s vs {plain:,.0f} without queues: {queued / plain:.3f}"
              f" (target >= 0.5; {rounds} rounds)", flush=True)  # fmt: skip
    if "before" in dsns:
        for kind in ("plain", "serial"):
            ratios = [a / b for a, b in zip(rates[("after", kind)], rates[("before", kind)],
                                            strict=True)]  # fmt: skip
            print(f"W1 {kind}: after / before jobs/s, median of {rounds} rounds:"
                  f" {statistics.median(ratios):.3f}", flush=True)  # fmt: skip


def _sql_round(dsn: str, n: int, queues: int, batch: int) -> tuple[float, float]:
    """Microseconds per job of get_jobs and of worker_complete_jobs, one session."""
    with connect(dsn) as conn:
        _reset(conn)
        conn.execute(BULK, {"n": n, "queues": queues})
        conn.execute("VACUUM ANALYZE errands._jobs")
        conn.execute("VACUUM ANALYZE errands._queues")
        # No WAL flush wait: the figure is the functions' own cost.
        conn.execute("SET synchronous_commit = off")
        fetch = complete = 0.0
        done = 0
        while True:
            t0 = time.perf_counter()
            ids = [row[0] for row in conn.execute(
                "SELECT id FROM errands.get_jobs('bench', ARRAY['noop'], %s)", (batch,),
                prepare=True)]  # fmt: skip
            t1 = time.perf_counter()
            if not ids:
                break
            conn.execute("SELECT errands.worker_complete_jobs('bench', %s::bigint[])", (ids,),
                         prepare=True)  # fmt: skip
            fetch += t1 - t0
            complete += time.perf_counter() - t1
            done += len(ids)
    if done != n:
        raise RuntimeError(f"fetched {done} of {n} jobs (queues={queues})")
    return fetch * 1e6 / n, complete * 1e6 / n


def sql_cost(dsns: dict[str, str], rounds: int, n: int, batch: int = 32) -> None:
    """get_jobs / worker_complete_jobs us per job, plain vs serial queues, before vs after."""
    runs = [(db, kind) for db in dsns for kind in ("plain", "serial")]
    got: dict[tuple[str, str], list[tuple[float, float]]] = {run: [] for run in runs}
    for r in range(rounds):
        for db, kind in runs if r % 2 == 0 else runs[::-1]:
            got[(db, kind)].append(
                _sql_round(dsns[db], n, n // 2 if kind == "serial" else 0, batch)
            )
    for db, kind in runs:
        fetch = statistics.median(f for f, _ in got[(db, kind)])
        complete = statistics.median(c for _, c in got[(db, kind)])
        print(f"{db} {kind}: get_jobs {fetch:.1f} us/job, worker_complete_jobs"
              f" {complete:.1f} us/job (batches of {batch}, {n:,} jobs, median of {rounds})",
              flush=True)  # fmt: skip
    for db in dsns:
        ratios = [(pf + pc) / (sf + sc) for (pf, pc), (sf, sc)
                  in zip(got[(db, "plain")], got[(db, "serial")], strict=True)]  # fmt: skip
        print(f"{db}: SQL cost per job plain / serial, median: {statistics.median(ratios):.3f}",
              flush=True)  # fmt: skip
    if "before" in dsns:
        for kind in ("plain", "serial"):
            ratios = [(af + ac) / (bf + bc) for (af, ac), (bf, bc)
                      in zip(got[("after", kind)], got[("before", kind)], strict=True)]  # fmt: skip
            print(f"{kind}: SQL cost per job after / before, median:"
                  f" {statistics.median(ratios):.3f}", flush=True)  # fmt: skip


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
    parser.add_argument(
        "--only", default="serial,sql,enqueue", help="comma-separated: serial,sql,enqueue"
    )
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
        before = create_database(cluster, "scale_before", before_sql)
        if "serial" in only:
            log(f"W1 c10: {n:,} jobs without queues vs over {n // 2:,} serial queues,"
                f" before ({ref[:10]}) and after, interleaved")  # fmt: skip
            serial({"before": before, "after": after}, rounds, n)
        if "sql" in only:
            log(f"SQL cost per job: before ({ref[:10]}) and after, one session, interleaved")
            sql_cost({"before": before, "after": after}, rounds, n // 2)
        if "enqueue" in only:
            log(f"enqueue cost: before ({ref[:10]}) vs after, interleaved")
            enqueue(
                {"before": before, "after": after},
                blocks=6 if args.quick else 12,
                bulk=20_000,
                single=500 if args.quick else 2_000,
            )


if __name__ == "__main__":
    main()

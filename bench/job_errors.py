"""What keeping every failed try (errands._jobs.errors, migration 0026) costs:
``python bench/job_errors.py [--quick] [--before-ref REF]``.

On a throwaway durable cluster (as bench/run.py), two databases: ``before`` with
the schema of ``--before-ref`` (default: the merge base with main; its
sql/install.sql; the figures in docs/dashboard.md used ``--before-ref
s4-metrics``) and ``after`` with this checkout's. The workers run with
``install=False`` (BENCH_WORKER_INSTALL=0), so neither is upgraded.

* **W1** (the success path): W1 c10 rounds (``--n`` no-ops, one ``--once``
  worker) interleaved between the two databases; the ratio of medians. Then the
  same with history kept (retention 1 hour: the completion copies the row into
  errands._finished_jobs, now with errors, run_at and started_at).
* **W3** (enqueue): one ``add_jobs`` of 50,000 no-ops from SQL, interleaved.
* **the failure path**: 1,000 jobs fetched and failed 25 times in a row (one
  ``get_jobs(..., 100)`` and one ``worker_fail_jobs`` of those 100 ids per call
  pair), interleaved call by call between the databases; the median time of a
  ``worker_fail_jobs`` of 100 jobs on the first 5 failures (errors empty to 5
  entries) and on the last 5 (at the cap of 20: an entry dropped per failure).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    connect,
    create_database,
    durable_cluster,
    enqueue_noops,
    log,
    w1_medians,
)


def w1_interleaved(dsns: dict[str, str], rounds: int, n: int, what: str) -> None:
    med = w1_medians(dsns, rounds, n)
    print(f"W1 c10 {what}: before {med['before']:,.0f} jobs/s, after {med['after']:,.0f} jobs/s,"
          f" after / before {med['after'] / med['before']:.3f}", flush=True)  # fmt: skip


def w3_interleaved(dsns: dict[str, str], rounds: int, n: int) -> None:
    """W3 (bulk enqueue from SQL, one add_jobs of n no-ops) interleaved."""
    took: dict[str, list[float]] = {name: [] for name in dsns}
    names = list(dsns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            with connect(dsns[name]) as conn:
                conn.execute("TRUNCATE errands._jobs")
                t0 = time.perf_counter()
                enqueue_noops(conn, n)
                took[name].append(time.perf_counter() - t0)
                conn.execute("TRUNCATE errands._jobs")
    med = {name: n / statistics.median(v) for name, v in took.items()}
    print(f"W3 add_jobs of {n:,}: before {med['before']:,.0f} jobs/s, after {med['after']:,.0f}"
          f" jobs/s, after / before {med['after'] / med['before']:.3f}", flush=True)  # fmt: skip


FAIL = ("SELECT count(*) FROM errands.worker_fail_jobs('bw', %s::bigint[],"
        " array_fill('boom: a failure message of moderate length'::text, ARRAY[%s::int]))")


def failure_path(dsns: dict[str, str], jobs: int, tries: int, batch: int) -> None:
    conns = {name: connect(dsn) for name, dsn in dsns.items()}
    try:
        for conn in conns.values():
            conn.execute("TRUNCATE errands._jobs")
            conn.execute(
                "SELECT count(*) FROM errands.add_jobs(ARRAY(SELECT ROW('failing', NULL, NULL,"
                " NULL, 100, NULL, NULL, NULL)::errands.job_spec FROM generate_series(1, %s)))",
                [jobs],
            )
            conn.execute("VACUUM ANALYZE errands._jobs")
        took: dict[str, list[list[float]]] = {name: [] for name in dsns}
        names = list(dsns)
        for t in range(tries):
            for conn in conns.values():
                conn.execute("UPDATE errands._jobs SET run_at = now() - interval '1 second'")
            per_try: dict[str, list[float]] = {name: [] for name in dsns}
            for b in range(jobs // batch):
                for name in names if (t + b) % 2 == 0 else names[::-1]:
                    conn = conns[name]
                    ids = [r[0] for r in conn.execute(
                        "SELECT id FROM errands.get_jobs('bw', '{failing}', %s)", [batch])]
                    t0 = time.perf_counter()
                    conn.execute(FAIL, [ids, len(ids)])
                    per_try[name].append(time.perf_counter() - t0)
            for name in names:
                took[name].append(per_try[name])
        for label, window in (("failures 1-5", slice(0, 5)),
                              (f"failures {tries - 4}-{tries}", slice(tries - 5, tries))):
            med = {name: statistics.median([x for per in took[name][window] for x in per]) * 1000
                   for name in names}
            print(f"worker_fail_jobs of {batch} jobs, {label}: before {med['before']:.2f} ms,"
                  f" after {med['after']:.2f} ms, after / before"
                  f" {med['after'] / med['before']:.3f}", flush=True)  # fmt: skip
        size = conns["after"].execute(
            "SELECT max(jsonb_array_length(errors)), avg(pg_column_size(errors))::int"
            " FROM errands._jobs").fetchone()
        print(f"after {tries} failures: errors holds {size and size[0]} entries,"
              f" {size and size[1]} bytes a row (stored)", flush=True)  # fmt: skip
    finally:
        for conn in conns.values():
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--before-ref", default=None,
                        help="git ref of the 'before' schema (default: the merge base with main)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--n", type=int, default=20_000, help="no-ops per W1 round")
    parser.add_argument("--only", default="w1,history,w3,fail", help="w1,history,w3,fail")
    args = parser.parse_args()
    ref = args.before_ref or subprocess.run(
        ["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    before_sql = subprocess.run(
        ["git", "show", f"{ref}:sql/install.sql"], cwd=ROOT, capture_output=True,
        text=True, check=True,
    ).stdout  # fmt: skip
    rounds = args.rounds or (4 if args.quick else 8)
    # The worker must not upgrade the "before" database to this checkout's schema.
    os.environ["BENCH_WORKER_INSTALL"] = "0"
    only = set(args.only.split(","))
    with durable_cluster() as cluster:
        dsns = {
            "before": create_database(cluster, "errors_before", before_sql),
            "after": create_database(cluster, "errors_after", None),
        }
        if "w1" in only:
            log(f"W1 c10: before ({ref[:12]}) vs after, interleaved")
            w1_interleaved(dsns, rounds, args.n, "retention 0")
        if "history" in only:
            for dsn in dsns.values():
                with connect(dsn) as conn:
                    conn.execute("SELECT errands.set_retention('1 hour')")
            log("W1 c10 with history kept: before vs after, interleaved")
            w1_interleaved(dsns, rounds, args.n, "retention 1 hour")
            for dsn in dsns.values():
                with connect(dsn) as conn:
                    conn.execute("SELECT errands.set_retention('0')")
                    conn.execute("TRUNCATE errands._finished_jobs")
        if "w3" in only:
            log("W3 bulk enqueue: before vs after, interleaved")
            w3_interleaved(dsns, rounds * 2, 50_000)
        if "fail" in only:
            log("the failure path: worker_fail_jobs, before vs after, interleaved")
            failure_path(dsns, 1_000, 25, 100)


if __name__ == "__main__":
    main()

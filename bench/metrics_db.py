"""What a scrape of the database-wide gauges costs on a big table (issue 15).

``python bench/metrics_db.py [--jobs N]``, and the ``metrics_db`` row of ``make
bench``: N jobs (default 1,000,000: 10 tasks, a tenth of them in 100 named
queues, a few scheduled, failed and running), analysed; then the median time
of :func:`errands.metrics_db.render_database_metrics` over 20 calls, against
the exact count a naive endpoint would run (``GROUP BY`` over ``errands.jobs``,
3 calls), and the shared buffers one render reads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import errands  # noqa: E402
from bench.common import Report, connect, durable_cluster, log  # noqa: E402
from errands.metrics_db import render_database_metrics  # noqa: E402

NAIVE = "SELECT task_identifier, queue_name, state, count(*) FROM errands.jobs GROUP BY 1, 2, 3"


def fill(dsn: str, jobs: int) -> None:
    """``jobs`` jobs in 100,000-job add_jobs calls, then a few running and failed."""
    with connect(dsn) as conn:
        conn.execute("TRUNCATE errands._jobs")
        done = 0
        while done < jobs:
            n = min(100_000, jobs - done)
            conn.execute(
                "SELECT count(*) FROM errands.add_jobs(ARRAY(SELECT ROW('task' || (i %% 10),"
                " NULL, CASE WHEN i %% 10 = 0 THEN 'q' || (i %% 1000 / 10) END,"
                " CASE WHEN i %% 50 = 0 THEN now() + interval '1 day' END, NULL, NULL, NULL,"
                " NULL)::errands.job_spec FROM generate_series(%s::int, %s::int) i))",
                (done, done + n - 1),
            )
            done += n
        conn.execute("SELECT count(*) FROM errands.get_jobs('bench-m', ARRAY['task1'], 50)")
        conn.execute(
            "UPDATE errands._jobs SET attempts = max_attempts, last_error = 'boom'"
            " WHERE id IN (SELECT id FROM errands._jobs WHERE task_id IS NOT NULL LIMIT 500)"
            " AND locked_at IS NULL"
        )
        conn.execute("VACUUM ANALYZE errands._jobs")


def timings(dsn: str) -> dict[str, float]:
    """Median ms of a render and of the naive exact count; buffers of one render."""
    with connect(dsn) as conn:
        render_database_metrics(conn)  # warm the plans and the cache
        render = []
        for _ in range(20):
            t0 = time.perf_counter()
            render_database_metrics(conn)
            render.append((time.perf_counter() - t0) * 1000)
        naive = []
        for _ in range(3):
            t0 = time.perf_counter()
            conn.execute(NAIVE).fetchall()
            naive.append((time.perf_counter() - t0) * 1000)
        buffers = 0
        for query in (
            "SELECT * FROM errands.job_counts()",
            "SELECT errands.oldest_ready_run_at()",
            "SELECT * FROM errands.worker_counts()",
        ):
            plan = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}").fetchone()
            assert plan is not None
            top = plan[0][0]["Plan"]
            buffers += top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
    return {
        "render_ms": statistics.median(render),
        "naive_ms": statistics.median(naive),
        "buffers": buffers,
    }


def metrics_db_row(dsn: str, jobs: int, rep: Report) -> None:
    log(f"filling errands._jobs with {jobs:,} jobs")
    fill(dsn, jobs)
    t = timings(dsn)
    rep.add(
        "metrics_db",
        f"render_database_metrics / exact GROUP BY, {jobs:,} jobs, median ms",
        f"{t['render_ms']:.1f} / {t['naive_ms']:.0f}",
        "",
        t,
    )
    with connect(dsn) as conn:
        conn.execute("TRUNCATE errands._jobs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    args = parser.parse_args()
    with durable_cluster() as cluster:
        dsn = cluster.dsn()
        with connect(dsn) as conn:
            errands.install(conn)
        log(f"filling errands._jobs with {args.jobs:,} jobs")
        fill(dsn, args.jobs)
        t = timings(dsn)
    print(
        f"{args.jobs:,} jobs: render_database_metrics median {t['render_ms']:.1f} ms"
        f" ({t['buffers']:,.0f} buffers from the top plan nodes); exact GROUP BY over"
        f" errands.jobs median {t['naive_ms']:.0f} ms",
        flush=True,
    )


if __name__ == "__main__":
    main()

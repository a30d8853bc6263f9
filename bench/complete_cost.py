"""The complete path before and after a schema change: ``python bench/complete_cost.py
[--base main] [--rounds 12] [--n 10000]``.

Installs the schema of git revision ``--base`` (its ``sql/install.sql``) and this
tree's into two databases of one throwaway cluster, then, in interleaved rounds
(the order alternating), adds ``--n`` no-op jobs and drains them with
``get_jobs(100)`` + ``worker_complete_jobs`` from one connection, with retention 0
(the plain DELETE path) and 1 hour (history).  Prints jobs/s per round, the medians
and the median of the paired ratios (this tree / base), the figure to read on a
shared machine.  Issue 12 used it for ``_jobs.cancel_reason`` (migration 0021).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from pgtap.cluster import PgCluster  # noqa: E402

ADD = (
    "SELECT count(*) FROM errands.add_jobs(ARRAY(SELECT ROW('noop', NULL, NULL, NULL, NULL,"
    " NULL, NULL, NULL)::errands.job_spec FROM generate_series(1, %s)))"
)


def drain_rate(dsn: str, n: int, retention: str) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT errands.set_retention(%s::interval)", [retention])
        conn.execute("TRUNCATE errands._finished_jobs")
        conn.execute(ADD, [n])
        conn.execute("VACUUM ANALYZE errands._jobs")
        began = time.perf_counter()
        while True:
            cur = conn.execute("SELECT id FROM errands.get_jobs('w', '{noop}', 100)")
            ids = [r[0] for r in cur]
            if not ids:
                break
            conn.execute("SELECT count(*) FROM errands.worker_complete_jobs('w', %s)", [ids])
        return n / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    base_sql = subprocess.run(
        ["git", "show", f"{args.base}:sql/install.sql"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    schemas = {"base": base_sql, "this": (ROOT / "sql" / "install.sql").read_text()}
    cluster = PgCluster().start()
    try:
        dsns = {}
        for name, sql in schemas.items():
            with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE {name}")
            with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
                conn.execute(sql.encode())
            dsns[name] = cluster.dsn(name)
        for retention in ("0", "1 hour"):
            rates: dict[str, list[float]] = {"base": [], "this": []}
            for r in range(args.rounds):
                for name in ("base", "this") if r % 2 == 0 else ("this", "base"):
                    rates[name].append(drain_rate(dsns[name], args.n, retention))
            ratios = sorted(t / b for t, b in zip(rates["this"], rates["base"], strict=True))
            print(
                f"retention {retention}: {args.base} {statistics.median(rates['base']):,.0f} "
                f"jobs/s, this tree {statistics.median(rates['this']):,.0f} jobs/s; paired "
                f"ratio median {statistics.median(ratios):.3f} "
                f"(range {ratios[0]:.2f}-{ratios[-1]:.2f}, {args.rounds} rounds)",
                flush=True,
            )
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()

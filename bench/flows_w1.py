"""W1 cost of the flow hooks (issue 14): ``python bench/flows_w1.py [--rounds N]``.

W1 c10 rounds (``--n`` no-ops, one ``--once`` worker) interleaved between the
schema as installed and the same schema with the completion and failure hooks
(errands._complete_dependencies, errands._dependencies_failed) replaced by
functions that return at once: the difference is what the hooks cost a queue
that uses no dependencies.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import connect, durable_cluster, install_database, log, w1_round  # noqa: E402
from bench.workloads import compile_errands  # noqa: E402

NO_HOOKS = """
CREATE OR REPLACE FUNCTION errands._complete_dependencies(worker_id text, job_ids bigint[],
                                                          results json[])
RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE OR REPLACE FUNCTION errands._dependencies_failed(job_ids bigint[])
RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"hooks": [], "no hooks": []}
    with durable_cluster() as cluster:
        dsn = cluster.dsn()
        install_database(dsn)
        with connect(dsn) as conn:
            hooks = ";\n".join(
                row[0]
                for row in conn.execute(
                    "SELECT pg_get_functiondef(p.oid) FROM pg_proc p WHERE p.oid IN"
                    " ('errands._complete_dependencies(text, bigint[], json[])'::regprocedure,"
                    " 'errands._dependencies_failed(bigint[])'::regprocedure)"
                ).fetchall()
            )
        compile_errands()
        log("W1 c10 with and without the flow hooks, interleaved")
        for r in range(args.rounds):
            for kind in ("hooks", "no hooks") if r % 2 == 0 else ("no hooks", "hooks"):
                with connect(dsn) as conn:
                    conn.execute(hooks if kind == "hooks" else NO_HOOKS)
                res = w1_round(dsn, args.n, 10)
                rates[kind].append(args.n / res.seconds)
                print(f"  round {r + 1} {kind:>8}: {args.n / res.seconds:,.0f} jobs/s", flush=True)
    for kind, values in rates.items():
        print(f"W1 c10 {kind:>8}: median {statistics.median(values):,.0f} jobs/s", flush=True)


if __name__ == "__main__":
    main()

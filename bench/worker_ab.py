"""The worker's Python code before and after a change:
``python bench/worker_ab.py [--base main] [--rounds 8] [--n 20000] [--workload w1|w2]``.

One durable cluster (as bench/run.py), one database with this checkout's schema.
In interleaved rounds (the order alternating), W1 c10 (``--n`` no-ops, one
``--once`` bench/worker.py process) runs with the ``errands`` package of git
revision ``--base`` (a temporary worktree, put first on PYTHONPATH) and with this
checkout's. Prints each round's jobs/s and the worker's CPU per job, then the
medians and the median of the paired ratios (this checkout / base). With
``--workload w2``, each round is instead bench/latency_trace.py's W2 trace (``--n``
jobs added one by one, 10 ms apart, to an idle continuous worker): add -> start
p50 and p90 per round, and their medians. The schema
is the same for both: only the Python side differs (run it with the Python whose
behaviour you want, e.g. a 3.12 venv for eager task start).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    connect,
    create_database,
    durable_cluster,
    w1_round,
)
from bench.workloads import compile_errands  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="main", help="git revision of the 'before' worker")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--n", type=int, default=None, help="jobs (w1: 20,000; w2: 300)")
    parser.add_argument("--workload", choices=("w1", "w2"), default="w1")
    args = parser.parse_args()
    if args.n is None:
        args.n = 20_000 if args.workload == "w1" else 300
    compile_errands()
    with tempfile.TemporaryDirectory(prefix="errands-ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base), args.base],
            check=True,
        )
        try:
            subprocess.run(
                [sys.executable, "-m", "compileall", "-q", str(base / "python_client")],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            run(args, str(base / "python_client"))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)])


def run(args: argparse.Namespace, base_path: str) -> None:
    paths = {"base": base_path, "this": str(ROOT / "python_client")}
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    saved = os.environ.get("PYTHONPATH")
    # Neither worker installs its schema: the database keeps this checkout's.
    os.environ["BENCH_WORKER_INSTALL"] = "0"
    with durable_cluster() as cluster:
        dsn = create_database(cluster, "ab", None)
        for r in range(args.rounds):
            for name in list(paths) if r % 2 == 0 else list(paths)[::-1]:
                os.environ["PYTHONPATH"] = paths[name]
                try:
                    got[name].append(one_round(args, dsn))
                finally:
                    if saved is None:
                        os.environ.pop("PYTHONPATH", None)
                    else:
                        os.environ["PYTHONPATH"] = saved
                a, b = got[name][-1]
                print(f"round {r + 1} {name:>4}: {LABELS[args.workload].format(a, b)}", flush=True)
    print(f"Python {sys.version.split()[0]}, base {args.base}, {args.workload}, n={args.n},"
          f" {args.rounds} rounds")  # fmt: skip
    for name in paths:
        a = statistics.median(x[0] for x in got[name])
        b = statistics.median(x[1] for x in got[name])
        print(f"  {name:>4}: {LABELS[args.workload].format(a, b)} (medians)")
    for i, what in enumerate(RATIOS[args.workload]):
        ratio = statistics.median(
            t[i] / b[i] for t, b in zip(got["this"], got["base"], strict=True)
        )
        print(f"  this / base, {what}: {ratio:.3f} (paired median)")


LABELS = {
    "w1": "{:,.0f} jobs/s, worker CPU {:.1f} us/job",
    "w2": "add -> start p50 {:.2f} ms, p90 {:.2f} ms",
}
RATIOS = {"w1": ("jobs/s", "worker CPU per job"), "w2": ("p50", "p90")}


def one_round(args: argparse.Namespace, dsn: str) -> tuple[float, float]:
    if args.workload == "w1":
        res = w1_round(dsn, args.n, 10)
        return args.n / res.seconds, res.cpu_seconds / args.n * 1e6
    from bench import latency_trace

    with connect(dsn) as conn:
        conn.execute("TRUNCATE errands._jobs")
    total = latency_trace.trace(dsn, args.n)["total"]
    return total["p50"], total["p90"]


if __name__ == "__main__":
    main()

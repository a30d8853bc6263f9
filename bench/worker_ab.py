"""The worker's Python code before and after a change:
``python bench/worker_ab.py [--base main] [--rounds 8] [--n 20000]``.

One durable cluster (as bench/run.py), one database with this checkout's schema.
In interleaved rounds (the order alternating), W1 c10 (``--n`` no-ops, one
``--once`` bench/worker.py process) runs with the ``errands`` package of git
revision ``--base`` (a temporary worktree, put first on PYTHONPATH) and with this
checkout's. Prints each round's jobs/s and the worker's CPU per job, then the
medians and the median of the paired ratios (this checkout / base). The schema
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
    compile_bytecode,
    create_database,
    durable_cluster,
    w1_round,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="main", help="git revision of the 'before' worker")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    compile_bytecode()
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
    rates: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    saved = os.environ.get("PYTHONPATH")
    # Neither worker installs its schema: the database keeps this checkout's.
    os.environ["BENCH_WORKER_INSTALL"] = "0"
    with durable_cluster() as cluster:
        dsn = create_database(cluster, "ab", None)
        for r in range(args.rounds):
            for name in list(paths) if r % 2 == 0 else list(paths)[::-1]:
                os.environ["PYTHONPATH"] = paths[name]
                try:
                    res = w1_round(dsn, args.n, 10)
                finally:
                    if saved is None:
                        os.environ.pop("PYTHONPATH", None)
                    else:
                        os.environ["PYTHONPATH"] = saved
                rates[name].append(args.n / res.seconds)
                cpu[name].append(res.cpu_seconds / args.n * 1e6)
                print(
                    f"round {r + 1} {name:>4}: {rates[name][-1]:,.0f} jobs/s,"
                    f" worker CPU {cpu[name][-1]:.1f} us/job",
                    flush=True,
                )
    ratio = statistics.median(t / b for t, b in zip(rates["this"], rates["base"], strict=True))
    cpu_ratio = statistics.median(t / b for t, b in zip(cpu["this"], cpu["base"], strict=True))
    print(f"Python {sys.version.split()[0]}, base {args.base}, n={args.n}, {args.rounds} rounds")
    for name in paths:
        print(
            f"  {name:>4}: {statistics.median(rates[name]):,.0f} jobs/s,"
            f" worker CPU {statistics.median(cpu[name]):.1f} us/job (medians)"
        )
    print(f"  this / base: jobs/s {ratio:.3f}, worker CPU per job {cpu_ratio:.3f} (paired medians)")


if __name__ == "__main__":
    main()

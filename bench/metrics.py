"""What the worker's Prometheus metrics cost W1 (issue 15).

``python bench/metrics.py [--rounds N] [--n JOBS]``, and the ``metrics`` row of
``make bench``: W1 c10 rounds (one ``--once`` worker, ``--n`` no-ops) with the
metrics endpoint on (``metrics_port=0``, every try counted for it) and off,
interleaved (on/off, off/on, ...); the medians and their ratio.  Target: on
within 5 % of off.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Report, durable_cluster, install_database, log, w1_round  # noqa: E402
from bench.workloads import compile_errands  # noqa: E402


def w1_metrics(dsn: str, rounds: int, n: int) -> dict[str, list[float]]:
    """jobs/s of each round, by "on" / "off", and the worker's CPU µs per job
    ("on cpu" / "off cpu")."""
    rates: dict[str, list[float]] = {"on": [], "off": [], "on cpu": [], "off cpu": []}
    try:
        for r in range(rounds):
            for kind in ("on", "off") if r % 2 == 0 else ("off", "on"):
                # bench/worker.py reads it; the worker processes inherit it.
                os.environ["BENCH_METRICS"] = "1" if kind == "on" else "0"
                res = w1_round(dsn, n, 10)
                rates[kind].append(n / res.seconds)
                rates[f"{kind} cpu"].append(res.cpu_seconds / n * 1e6)
                print(
                    f"  round {r + 1} metrics {kind:>3}: {n / res.seconds:,.0f} jobs/s,"
                    f" worker CPU {res.cpu_seconds / n * 1e6:.1f} us/job",
                    flush=True,
                )
    finally:
        os.environ.pop("BENCH_METRICS", None)
    return rates


def metrics_row(dsn: str, rounds: int, n: int, rep: Report) -> None:
    """make bench's row: W1 with metrics on / off."""
    rates = w1_metrics(dsn, rounds, n)
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    cpu_on, cpu_off = statistics.median(rates["on cpu"]), statistics.median(rates["off cpu"])
    rep.add(
        "metrics",
        f"W1 c10, metrics on / off (metrics_port), jobs/s, {rounds} rounds each, interleaved",
        f"{on:,.0f} / {off:,.0f} ({on / off:.3f}x)",
        ">= 0.95x",
        {"on": on, "off": off, "ratio": on / off, "rounds": rates},
    )
    rep.add(
        "metrics.cpu",
        "W1 c10, worker CPU per job, metrics off / on (us), same rounds",
        f"{cpu_off:.1f} / {cpu_on:.1f} ({cpu_off / cpu_on:.3f}x)",
        ">= 0.95x",
        {"on": cpu_on, "off": cpu_off},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    with durable_cluster() as cluster:
        dsn = cluster.dsn()
        install_database(dsn)
        compile_errands()
        log("W1 c10 with metrics on and off, interleaved")
        rates = w1_metrics(dsn, args.rounds, args.n)
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    cpu_on, cpu_off = statistics.median(rates["on cpu"]), statistics.median(rates["off cpu"])
    print(f"W1 c10 metrics on: median {on:,.0f} jobs/s; off: {off:,.0f} jobs/s; "
          f"on/off {on / off:.3f}", flush=True)  # fmt: skip
    print(f"worker CPU per job: on {cpu_on:.1f} us, off {cpu_off:.1f} us; "
          f"off/on {cpu_off / cpu_on:.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

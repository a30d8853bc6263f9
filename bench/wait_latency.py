"""Waiting figures (issue 12): ``python bench/wait_latency.py [--n N] [--w1-against REF]``.

On a throwaway durable cluster (as bench/run.py):

* **wait latency**: a waiter (``SyncWorkerUtils.wait_for_job`` in a thread, its
  own connection) watches a pending job; the main thread fetches it and completes
  it with ``worker_complete_jobs`` (autocommit: the call returns after the
  commit). The figure is the time from that return to the waiter's return (the
  NOTIFY, a ``watch_jobs`` call and a ``finished_jobs`` read), p50 and p99. Also
  run by ``make bench`` (row ``wait``).
* **W1 before/after** (``--w1-against REF``, e.g. ``main``): W1 c10 rounds
  (nobody waits) interleaved between this checkout's definitions and REF's
  ``worker_complete_jobs`` and ``worker_fail_jobs`` (read with ``git show
  REF:sql/schema/30_fetch.sql``): the cost the waiting hooks add to jobs nobody
  watches.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.common import Report, connect, durable_cluster, install_database, log, w1_round  # noqa: E402
from bench.workloads import compile_errands  # noqa: E402
from errands import SyncWorkerUtils  # noqa: E402

FETCH = ROOT / "sql" / "schema" / "30_fetch.sql"
HOOKED = ("worker_complete_jobs", "worker_fail_jobs")
COMPLETE = "SELECT errands.worker_complete_jobs('bench-w', ARRAY[%s::bigint], ARRAY['1'::json])"


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] * 1000


def wait_latencies(dsn: str, n: int) -> list[float]:
    """Seconds from the completion's commit to the waiter's return, n times."""
    out: list[float] = []
    with connect(dsn) as conn, SyncWorkerUtils(dsn) as utils:
        for _ in range(n):
            row = conn.execute("SELECT id FROM errands.add_job('latency', '{\"t\": 0}')").fetchone()
            assert row is not None
            job_id = int(row[0])
            returned: list[float] = []

            def waiter(job_id: int = job_id, returned: list[float] = returned) -> None:
                utils.wait_for_job(job_id, timeout=30, poll_interval=30)
                returned.append(time.perf_counter())

            thread = threading.Thread(target=waiter)
            thread.start()
            # Watched (and so the waiter is about to wait for the notification).
            while not conn.execute(
                "SELECT watched FROM errands._jobs WHERE id = %s", [job_id]
            ).fetchone()[0]:  # type: ignore[index]
                time.sleep(0.001)
            time.sleep(0.005)
            conn.execute("SELECT errands.get_jobs('bench-w', ARRAY['latency'])")
            conn.execute(COMPLETE, [job_id])
            committed = time.perf_counter()
            thread.join(30)
            out.append(returned[0] - committed)
    return out


def wait_row(dsn: str, n: int, rep: Report) -> None:
    values = wait_latencies(dsn, n)
    p50, p99 = _pct(values, 0.5), _pct(values, 0.99)
    rep.add(
        "wait",
        f"completion commit -> waiter returns, p50 / p99 ({n} jobs)",
        f"{p50:.2f} / {p99:.2f} ms",
        "",
        {"p50_ms": p50, "p99_ms": p99, "n": n},
    )


def _definitions(text: str) -> str:
    """The CREATE OR REPLACE FUNCTION statements of HOOKED in a 30_fetch.sql text."""
    out = []
    for name in HOOKED:
        start = text.index(f"CREATE OR REPLACE FUNCTION errands.{name}(")
        body = text.index("$$", start)
        end = text.index("$$;", text.index("$$", body + 2)) + 3
        out.append(text[start:end])
    return "\n".join(out)


def w1_against(dsn: str, ref: str, rounds: int, n: int) -> None:
    before = _definitions(
        subprocess.run(
            ["git", "show", f"{ref}:sql/schema/30_fetch.sql"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
    )  # fmt: skip
    after = _definitions(FETCH.read_text())
    assert re.search(r"_jobs_finished", after) and not re.search(r"_jobs_finished", before)
    rates: dict[str, list[float]] = {"before": [], "after": []}
    for r in range(rounds):
        for which in ("before", "after") if r % 2 == 0 else ("after", "before"):
            with connect(dsn) as conn:
                conn.execute(before if which == "before" else after)
            res = w1_round(dsn, n, 10)
            rates[which].append(n / res.seconds)
            print(f"  round {r + 1} {which:>6}: {n / res.seconds:,.0f} jobs/s", flush=True)
    for which, values in rates.items():
        print(f"W1 c10 {which} ({ref if which == 'before' else 'this checkout'}):"
              f" median {statistics.median(values):,.0f} jobs/s over {len(values)} rounds",
              flush=True)  # fmt: skip
    ratio = statistics.median(rates["after"]) / statistics.median(rates["before"])
    print(f"after / before: {ratio:.3f}", flush=True)
    with connect(dsn) as conn:
        conn.execute(after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300, help="waits timed")
    parser.add_argument("--w1-against", metavar="REF", help="also W1 before/after against REF")
    parser.add_argument("--rounds", type=int, default=6, help="W1 rounds per side")
    parser.add_argument("--w1-n", type=int, default=20_000, help="no-ops per W1 round")
    args = parser.parse_args()
    with durable_cluster() as cluster:
        dsn = cluster.dsn()
        install_database(dsn)
        compile_errands()
        log("wait latency")
        wait_row(dsn, args.n, Report())
        if args.w1_against:
            log(f"W1 c10, this checkout vs {args.w1_against}, interleaved")
            w1_against(dsn, args.w1_against, args.rounds, args.w1_n)


if __name__ == "__main__":
    main()

"""Flow figures (issue 14): ``python bench/flows.py [--rounds N]``, and part of
``make bench`` (bench/run.py, workload ``flows``).

* **fan-in**: 10,000 no-op children and one continuation that depends on all of
  them (``add_job(..., depends_on)``), run by one continuous worker (c10), vs the
  same 10,001 jobs without dependencies; rounds interleaved. Reports the total
  time of each (median) and their ratio, and the release latency: the
  continuation's start minus its release (the last child's completing
  transaction sets its updated_at), p50 over the rounds.
* **chain**: 1,000 steps, each depending on the previous (one ``add_flow``), vs
  1,000 independent no-ops: time per step of each and the difference (per-step
  overhead of a dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from psycopg.types.json import Jsonb  # noqa: E402

import errands  # noqa: E402
from bench.common import (  # noqa: E402
    PY,
    WORKER,
    Report,
    connect,
    durable_cluster,
    enqueue_noops,
    log,
)
from bench.workloads import compile_errands  # noqa: E402


def run_continuous(dsn: str, expected: int) -> float:
    """Start a continuous c10 worker on the jobs already enqueued; seconds from its
    READY until errands._jobs is empty. (Not ``--once``: a run-once worker ends
    when a fetch finds nothing, which can be just before the completion that
    releases the next step is committed.)"""
    proc = subprocess.Popen([PY, str(WORKER), dsn, "10", "continuous"], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "READY":
        raise RuntimeError("flows: the worker did not start")
    t0 = time.perf_counter()
    with connect(dsn) as conn:
        while conn.execute("SELECT EXISTS (SELECT 1 FROM errands._jobs)").fetchone() != (False,):
            time.sleep(0.005)
    seconds = time.perf_counter() - t0
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    got = json.loads(out.strip().splitlines()[-1])
    if got["ok"] != expected or got["failed"]:
        raise RuntimeError(f"flows: {got['ok']} ok, {got['failed']} failed of {expected}")
    return seconds


def _fan_in_round(dsn: str, children: int, flow: bool, lat_file: Path) -> float:
    with connect(dsn) as conn:
        enqueue_noops(conn, children)
        if flow:
            conn.execute(
                "SELECT errands.add_job('released', depends_on =>"
                " ARRAY(SELECT id FROM errands._jobs WHERE waiting_for IS NULL))"
            )
        else:
            conn.execute("SELECT errands.add_job('noop')")
        conn.execute("VACUUM ANALYZE errands._jobs")
    return run_continuous(dsn, children + 1)


def fan_in(dsn: str, rep: Report, rounds: int, children: int = 10_000) -> None:
    with tempfile.NamedTemporaryFile("r", suffix=".lat", delete=False) as tmp:
        lat_file = Path(tmp.name)
    os.environ["BENCH_LATENCY_FILE"] = str(lat_file)
    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for r in range(rounds):
            for flow in (True, False) if r % 2 == 0 else (False, True):
                times[flow].append(_fan_in_round(dsn, children, flow, lat_file))
                print(f"  round {r + 1} {'fan-in' if flow else 'plain'}: {times[flow][-1]:.2f} s",
                      flush=True)  # fmt: skip
        lat = [float(x) for x in lat_file.read_text().split()]
    finally:
        lat_file.unlink(missing_ok=True)
    flow_s, plain_s = statistics.median(times[True]), statistics.median(times[False])
    rep.add("F1.total", f"fan-in {children:,} + 1 vs {children + 1:,} plain, c10, median",
            f"{flow_s:.2f} / {plain_s:.2f} s = {flow_s / plain_s:.2f}x", "<= 1.2x",
            {"flow": times[True], "plain": times[False]})  # fmt: skip
    rep.add("F1.release", f"fan-in: continuation start - release, p50 of {len(lat)}",
            f"{statistics.median(lat):.1f} ms", "", lat)  # fmt: skip


def chain(dsn: str, rep: Report, steps: int = 1_000) -> None:
    flow = [{"name": "s1", "task": "noop"}] + [
        {"name": f"s{i}", "task": "noop", "depends_on": [f"s{i - 1}"]} for i in range(2, steps + 1)
    ]
    with connect(dsn) as conn:
        conn.execute("SELECT count(*) FROM errands.add_flow(%s)", [Jsonb({"steps": flow})])
    chained = run_continuous(dsn, steps)
    with connect(dsn) as conn:
        enqueue_noops(conn, steps)
    plain = run_continuous(dsn, steps)
    per_chain, per_plain = chained / steps * 1000, plain / steps * 1000
    rep.add("F2.chain", f"chain of {steps:,}: ms per step vs independent jobs",
            f"{per_chain:.2f} vs {per_plain:.2f} ms (+{per_chain - per_plain:.2f})", "report",
            {"chain_ms": per_chain, "plain_ms": per_plain})  # fmt: skip


def flows(dsn: str, rep: Report, rounds: int = 3) -> None:
    fan_in(dsn, rep, rounds)
    chain(dsn, rep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="fan-in rounds of each kind")
    args = parser.parse_args()
    with durable_cluster() as cluster:
        dsn = cluster.dsn()
        with connect(dsn) as conn:
            errands.install(conn)
        compile_errands()
        log("flows: fan-in and chain")
        flows(dsn, Report(), args.rounds)


if __name__ == "__main__":
    main()

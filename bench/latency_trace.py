"""Where W2's add -> start latency goes: a trace of each job's path.

``python bench/latency_trace.py [--jobs 300]`` starts its own durable cluster (as
bench/run.py), one continuous worker process (concurrency 10, this file with
``--worker``) and adds jobs one by one, 10 ms apart, as W2 does.  Each stage is
stamped with ``time.time()`` (one machine, one clock):

* ``add``: the ``SELECT errands.add_job(...)`` call, as the client sees it (its
  commit waits for the WAL flush: ``synchronous_commit`` is on);
* ``notify``: from the end of that call to the worker reading the notification
  (negative when it arrives before the adder has read its reply);
* ``wake``: notification read -> ``get_jobs`` sent (the worker's event loop);
* ``fetch``: the ``get_jobs`` call (it locks the job: a write, so another WAL flush);
* ``start``: ``get_jobs`` returned -> the task runs.

Prints the median and p90 of each stage and of the whole (payload time -> start).
The worker's fetch and notification hooks are wrapped here, in the bench's own
process; the library has no such hooks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from psycopg.types.json import Json

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import PY, connect, durable_cluster  # noqa: E402

STAGES = ["add", "notify", "wake", "fetch", "start", "total"]


def worker(dsn: str, out_path: str) -> None:
    import errands
    from errands import worker as worker_module
    from errands._presence import Presence

    out = open(out_path, "a", buffering=1)  # noqa: SIM115

    def stamp(kind: str, *values: float) -> None:
        out.write(json.dumps([kind, *values]) + "\n")

    fetch = worker_module.Worker._fetch

    async def traced_fetch(self: Any, count: int) -> Any:
        t0 = time.time()
        jobs = await fetch(self, count)
        stamp("fetch", t0, time.time(), len(jobs))
        return jobs

    notified = Presence.notified

    def traced_notified(self: Any) -> None:
        stamp("notify", time.time())
        notified(self)

    worker_module.Worker._fetch = traced_fetch  # type: ignore[method-assign]
    Presence.notified = traced_notified  # type: ignore[method-assign]

    async def latency(payload: Any, helpers: Any) -> None:
        stamp("start", float(payload["t"]), time.time())

    async def main() -> None:
        runner = await errands.run(
            dsn, {"latency": latency}, concurrency=10, quiet=True, handle_signals=True,
            poll_interval=2.0, gc_tuning=True,
        )  # fmt: skip
        print("READY", flush=True)
        await runner.wait()

    errands.configure_logging(level=30)
    asyncio.run(main())


def trace(dsn: str, jobs: int, worker_options: str = "") -> dict[str, dict[str, float]]:
    with tempfile.NamedTemporaryFile("r", suffix=".trace", delete=False) as tmp:
        path = Path(tmp.name)
    env = dict(os.environ)
    if worker_options:
        env["PGOPTIONS"] = worker_options
    proc = subprocess.Popen(
        [PY, __file__, "--worker", dsn, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    adds: list[tuple[float, float]] = []
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "READY":
            raise RuntimeError("trace worker did not start")
        time.sleep(1.0)
        with connect(dsn) as conn:
            conn.execute("SELECT 1")
            for _ in range(jobs):
                t = time.time()
                conn.execute(
                    "SELECT errands.add_job(identifier => 'latency', payload => %s::json)",
                    (Json({"t": t}),),
                )
                adds.append((t, time.time()))
                time.sleep(0.010)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.unlink(missing_ok=True)
    notifies = sorted(r[1] for r in rows if r[0] == "notify")
    fetches = sorted((r[1], r[2]) for r in rows if r[0] == "fetch" and r[3] > 0)
    starts = {r[1]: r[2] for r in rows if r[0] == "start"}
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    for t, added in adds:
        start = starts.get(t)
        note = next((n for n in notifies if n >= t), None)
        got = [f for f in fetches if f[1] <= (start or 0) and f[0] >= t]
        if start is None or note is None or not got:
            continue
        f0, f1 = got[-1]
        parts = [added - t, note - added, f0 - note, f1 - f0, start - f1, start - t]
        for name, value in zip(STAGES, parts, strict=True):
            stages[name].append(value * 1000)

    def pct(values: list[float], p: float) -> float:
        values = sorted(values)
        return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]

    return {
        name: {"p50": statistics.median(v), "p90": pct(v, 90), "n": len(v)}
        for name, v in stages.items()
        if v
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument(
        "--worker-options",
        default="",
        help="PGOPTIONS of the worker process only, e.g. '-c synchronous_commit=off' to"
        " see what its commits' WAL flushes cost",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import errands

    os.environ.pop("BENCH_LATENCY_FILE", None)
    with durable_cluster() as cluster:
        dsn = cluster.dsn()
        with connect(dsn) as conn:
            errands.install(conn)
        res = trace(dsn, args.jobs, args.worker_options)
    print("| stage | p50 ms | p90 ms |")
    print("|---|---|---|")
    for name, v in res.items():
        print(f"| {name} | {v['p50']:.2f} | {v['p90']:.2f} |")
    print(f"({res['total']['n']} of {args.jobs} jobs traced)")


if __name__ == "__main__":
    main()

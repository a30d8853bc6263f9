"""A worker process for the benchmark: what ``errands worker`` does, plus counting.

``python bench/worker.py DSN CONCURRENCY once|continuous [POLL_SECONDS]`` runs the tasks of
bench/tasks.py like ``errands worker -c DSN --tasks bench/tasks.py -j N --quiet
[--once]`` (with the CLI's garbage-collector tuning, ``gc_tuning=True``) and, at
exit, prints one JSON line on stdout: the number of ``job:complete`` events
without error, with error, the number of distinct job ids completed (so a job
run twice shows as completions > distinct) and its peak RSS.  In continuous
mode it prints ``READY`` once it is listening and stops on SIGTERM.  With
``BENCH_RSS_EVERY=N`` it also samples its RSS every N completed jobs
(``"rss": [[jobs, MB], ...]``, for bench/memory.py) and keeps no set of job ids,
which would grow with the jobs (``distinct`` is then 0).  With ``BENCH_METRICS=1``
it serves Prometheus metrics (``metrics_port=0``: the cost of counting for them).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import errands
from errands import Event, Events

TASKS = str(Path(__file__).resolve().parent / "tasks.py")


async def main(dsn: str, concurrency: int, mode: str, poll_interval: float = 2.0) -> None:
    events = Events()
    ok = 0
    failed = 0
    ids: set[int] = set()
    every = int(os.environ.get("BENCH_RSS_EVERY", "0"))
    rss: list[tuple[int, float]] = []

    def on_complete(event: Event) -> None:
        nonlocal ok, failed
        if event.error is None:
            ok += 1
        else:
            failed += 1
        if event.job is not None and not every:
            ids.add(event.job.id)
        if every and (ok + failed) % every == 0:
            rss.append((ok + failed, status_mb("VmRSS")))

    events.on("job:complete", on_complete)
    registry = errands.load_tasks([TASKS])
    # BENCH_METRICS=1: with the Prometheus endpoint on (bench/metrics.py).
    metrics_port = 0 if os.environ.get("BENCH_METRICS") == "1" else None
    # BENCH_WORKER_INSTALL=0: leave the schema as it is (a "before" database of a
    # before/after comparison must not be upgraded to this checkout's schema).
    install = os.environ.get("BENCH_WORKER_INSTALL", "1") != "0"
    if mode == "once":
        await errands.run_once(
            dsn, registry, concurrency=concurrency, events=events, quiet=True,
            handle_signals=True, gc_tuning=True, install=install, metrics_port=metrics_port,
        )  # fmt: skip
    else:
        runner = await errands.run(
            dsn, registry, concurrency=concurrency, events=events, quiet=True,
            handle_signals=True, poll_interval=poll_interval, gc_tuning=True, install=install,
            metrics_port=metrics_port,
        )  # fmt: skip
        print("READY", flush=True)
        await runner.wait()
    out = {"ok": ok, "failed": failed, "distinct": len(ids), "vmhwm_mb": vmhwm_mb(), "rss": rss}
    print(json.dumps(out), flush=True)


def vmhwm_mb() -> float:
    """This process's peak RSS (VmHWM), MB.

    Not ``wait4``'s ru_maxrss: Linux folds the forking parent's RSS into the child's
    ru_maxrss at exec, so a big bench/run.py would show up as the worker's size.
    """
    return status_mb("VmHWM")


def status_mb(field: str) -> float:
    """A ``/proc/self/status`` figure (kB there), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


if __name__ == "__main__":
    errands.configure_logging(level=30)
    # The 4th argument is the poll interval; W2 passes its latency file there, as
    # the peers' runners take it (ours reads $BENCH_LATENCY_FILE): not a number.
    arg = sys.argv[4] if len(sys.argv) > 4 else ""
    poll = float(arg) if arg.replace(".", "", 1).isdigit() else 2.0
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], poll))

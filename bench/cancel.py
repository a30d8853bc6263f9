"""Cancellation latency (issue 12): from calling ``errands.cancel_jobs`` on a
running job to its task seeing it, for an async task (``CancelledError``) and a
sync task (``helpers.abort`` set), p50/p99 over ``samples`` jobs each.

The worker runs in this process (``errands.run``, LISTEN on ``errands:cancel``);
the canceller is another connection of this process (autocommit: the call
returns after the commit).  Each sample: add a job whose task waits 30 s, wait
until it starts, time the call, wait for the task to record when it saw the
cancellation.  Run alone with ``python bench/cancel.py [--samples N]`` (its own
cluster) or as part of ``make bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

import errands  # noqa: E402
from bench.common import Report, connect, durable_cluster, log  # noqa: E402
from errands import Helpers, task  # noqa: E402

_started: dict[int, threading.Event] = {}
_seen: dict[int, float] = {}  # job id -> perf_counter when the task saw the cancellation


def _begin(job_id: int) -> None:
    _started.setdefault(job_id, threading.Event()).set()


@task("bench_cancel_async")
async def cancel_async(payload: Any, helpers: Helpers) -> None:
    _begin(helpers.job.id)
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        _seen[helpers.job.id] = time.perf_counter()
        raise


@task("bench_cancel_sync")
def cancel_sync(payload: Any, helpers: Helpers) -> None:
    _begin(helpers.job.id)
    if helpers.abort.wait(30):
        _seen[helpers.job.id] = time.perf_counter()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(dsn: str, identifier: str, samples: int) -> list[float]:
    delays: list[float] = []
    runner = await errands.run(
        dsn, [cancel_async, cancel_sync], concurrency=2, log_jobs=False, poll_interval=1.0
    )
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            for _ in range(samples):
                cur = await conn.execute("SELECT id FROM errands.add_job(%s)", [identifier])
                row = await cur.fetchone()
                assert row is not None
                job_id = row[0]
                event = _started.setdefault(job_id, threading.Event())
                if not await asyncio.to_thread(event.wait, 10):
                    raise RuntimeError(f"job {job_id} did not start")
                began = time.perf_counter()
                await conn.execute("SELECT errands.cancel_jobs(ARRAY[%s::bigint])", [job_id])
                deadline = began + 10
                while job_id not in _seen and time.perf_counter() < deadline:
                    await asyncio.sleep(0.0005)
                if job_id not in _seen:
                    raise RuntimeError(f"job {job_id}: the task never saw its cancellation")
                delays.append((_seen[job_id] - began) * 1000.0)
    finally:
        await runner.stop()
    return delays


def cancel_latency(dsn: str, rep: Report, samples: int) -> None:
    for kind in ("async", "sync"):
        delays = asyncio.run(_measure(dsn, f"bench_cancel_{kind}", samples))
        p50, p99 = statistics.median(delays), _pct(delays, 0.99)
        rep.add(
            f"cancel.{kind}",
            f"cancel_jobs -> {kind} task sees it, p50 / p99 ({samples} jobs)",
            f"{p50:.1f} / {p99:.1f} ms",
            "~100 ms",
            {"p50_ms": p50, "p99_ms": p99, "samples": samples},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    with durable_cluster() as cluster:
        dsn = cluster.dsn()
        with connect(dsn) as conn:
            errands.install(conn)
        log("cancellation latency")
        cancel_latency(dsn, Report(), args.samples)


if __name__ == "__main__":
    main()

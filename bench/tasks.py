"""Tasks for the benchmark (loaded by the worker with ``--tasks bench/tasks.py``)."""

from __future__ import annotations

import os
import time
from typing import IO, Any

from errands import Helpers, task

_latency_out: IO[str] | None = None


@task
async def noop(payload: Any, helpers: Helpers) -> None:
    """Does nothing: W1/W4 measure the queue, not the task."""


@task
async def latency(payload: Any, helpers: Helpers) -> None:
    """W2: record start - enqueue time (ms) to ``$BENCH_LATENCY_FILE``."""
    start = time.time()
    global _latency_out
    if _latency_out is None:
        _latency_out = open(os.environ["BENCH_LATENCY_FILE"], "a", buffering=1)  # noqa: SIM115
    _latency_out.write(f"{(start - float(payload['t'])) * 1000.0:.4f}\n")


@task
async def released(payload: Any, helpers: Helpers) -> None:
    """Flows: record start - release time (ms; the release sets the job's
    updated_at in the completing transaction) to ``$BENCH_LATENCY_FILE``."""
    start = time.time()
    with open(os.environ["BENCH_LATENCY_FILE"], "a") as out:
        out.write(f"{(start - helpers.job.updated_at.timestamp()) * 1000.0:.4f}\n")


@task
async def nap(payload: Any, helpers: Helpers) -> None:
    """bench/flow_control.py: a job that takes payload["s"] seconds; with
    ``$BENCH_TRACE_FILE`` it appends its start and end times (epoch seconds)."""
    import asyncio

    start = time.time()
    await asyncio.sleep(float(payload["s"]))
    trace = os.environ.get("BENCH_TRACE_FILE")
    if trace:
        with open(trace, "a") as out:
            out.write(f"{start:.6f} {time.time():.6f}\n")

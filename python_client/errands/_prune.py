"""Pruning of expired finished jobs (``errands.prune_finished_jobs``) by live workers.

Every continuous worker calls it once shortly after it starts and then every
``PRUNE_INTERVAL`` seconds (random in the range, so that workers started together
spread out), repeating the call while one deletes ``PRUNE_BATCH`` rows: each call
is a short transaction on ``errands._finished_jobs`` that skips rows another
pruner holds, so several workers pruning at once neither wait for each other nor
slow fetching (which reads ``errands._jobs``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from errands import _queries as q
from errands._connections import ConnectionSource
from errands._retry import Outage

PRUNE_INTERVAL = (45.0, 75.0)
"""Seconds between two pruning rounds of one worker (random in this range)."""

PRUNE_BATCH = 10_000
"""Rows one ``prune_finished_jobs`` call deletes at most."""


async def prune_once(source: ConnectionSource, max_rows: int = PRUNE_BATCH) -> int:
    """Prune until a call deletes fewer than ``max_rows``; returns the rows deleted."""
    total = 0
    while True:
        async with source.connection() as conn:
            cur = await conn.execute(q.PRUNE_FINISHED_JOBS, {"max_rows": max_rows})
            row = await cur.fetchone()
        count = int(row[0]) if row else 0
        total += count
        if count < max_rows:
            return total
        await asyncio.sleep(0)  # let the worker's own fetches in between steps


async def prune_loop(source: ConnectionSource, emit: Callable[..., None], outage: Outage) -> None:
    """The worker's pruning task: runs until cancelled; failures are logged, not fatal."""
    await asyncio.sleep(random.uniform(0.0, 1.0))
    while True:
        try:
            count = await prune_once(source)
            if count:
                emit("worker:prune", data={"count": count})
        except Exception as exc:
            emit("worker:prune:error", error=exc)
            outage.failed("prune", exc, "prune_finished_jobs", hold=False)
        await asyncio.sleep(random.uniform(*PRUNE_INTERVAL))

"""Giving job locks back: a worker's own jobs fetched but never started
(``worker_return_jobs``, at shutdown or after its lock was lost) and the stale
locks of workers presumed dead (``reset_locked`` sweeps, at start and every
``SWEEP_INTERVAL`` seconds)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from errands import _queries as q
from errands._connections import ConnectionSource
from errands._retry import Outage, retry_transient
from errands.job import Job
from errands.logs import error_message

logger = logging.getLogger("errands.worker")

SWEEP_INTERVAL = (480.0, 600.0)
"""Seconds between two ``reset_locked`` sweeps (random in this range)."""


async def return_jobs(
    source: ConnectionSource, worker_id: str, emit: Callable[..., None], jobs: list[Job]
) -> None:
    """Hand back jobs fetched but not started (their lock and attempt)."""
    if not jobs:
        return
    ids = [job.id for job in jobs]
    try:
        async with source.connection() as conn:
            await conn.execute(q.WORKER_RETURN_JOBS, {"worker_id": worker_id, "ids": ids})
    except Exception as exc:
        logger.error(
            "errands: could not return unstarted jobs %s (%s); they stay locked by %s",
            ids, error_message(exc), worker_id,
        )  # fmt: skip
        return
    emit("worker:return", data={"job_ids": ids})


async def sweep(source: ConnectionSource, emit: Callable[..., None]) -> None:
    """One ``reset_locked`` call (transient faults retried)."""

    async def call() -> Any:
        async with source.connection() as conn:
            cur = await conn.execute(q.RESET_LOCKED)
            return await cur.fetchone()

    row = await retry_transient(call, "reset_locked")
    emit("worker:sweep", data={"count": row[0] if row else 0})


async def sweep_loop(source: ConnectionSource, emit: Callable[..., None], outage: Outage) -> None:
    """The worker's sweeping task: runs until cancelled; failures are logged, not fatal."""
    while True:
        await asyncio.sleep(random.uniform(*SWEEP_INTERVAL))
        try:
            await sweep(source, emit)
        except Exception as exc:
            emit("worker:sweep:error", error=exc)
            outage.failed("sweep", exc, "reset_locked", hold=False)

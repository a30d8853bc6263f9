"""The chaos test's task (see chaos/run.py).

``chaos_job`` sleeps a small random time, then records its execution with one
plain INSERT on its own pooled connection: job id, this attempt, the worker that
ran it, start and end (wall clock, so runs in different processes compare), and
the previous try's ``last_error`` (why an earlier attempt did not finish: a dead
worker, a lost connection ...).  The row is written whether or not the worker
later manages to record the job's completion, so a job that ran to completion
twice has two rows.

A job whose payload has ``snooze`` snoozes once before it runs: its first try
records the job id in ``chaos_snoozed`` and raises :class:`errands.Snooze`, so
snoozes (which give the attempt back) are mixed into the kills and restarts.
A job whose payload has ``long`` sleeps 300-600 ms (chaos/cancels.py cancels
some of those while they run).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from errands import Helpers, Snooze, task

RESULTS_TABLE = """
CREATE TABLE IF NOT EXISTS chaos_results (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id bigint NOT NULL,
    attempt int NOT NULL,
    worker_id text NOT NULL,
    queue_name text,
    started double precision NOT NULL,
    ended double precision NOT NULL,
    prev_error text
)
"""

SNOOZED_TABLE = """
CREATE TABLE IF NOT EXISTS chaos_snoozed (
    job_id bigint PRIMARY KEY,
    attempt int NOT NULL,
    worker_id text NOT NULL
)
"""

INSERT = (
    "INSERT INTO chaos_results (job_id, attempt, worker_id, queue_name, started, ended, "
    "prev_error) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


@task
async def chaos_job(payload: dict[str, Any], helpers: Helpers) -> None:
    job = helpers.job
    if payload.get("snooze"):
        async with helpers.connection() as conn:
            first = await conn.execute(
                "INSERT INTO chaos_snoozed (job_id, attempt, worker_id) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                [job.id, job.attempts, helpers.worker_id],
            )
            if first.rowcount:
                raise Snooze(0.05)
    started = time.time()
    if payload.get("long"):
        await asyncio.sleep(random.uniform(0.3, 0.6))
    else:
        await asyncio.sleep(random.uniform(0, float(payload.get("max_ms", 20))) / 1000)
    ended = time.time()
    async with helpers.connection() as conn:
        await conn.execute(
            INSERT,
            [job.id, job.attempts, helpers.worker_id, job.queue_name, started, ended,
             job.last_error],
        )  # fmt: skip

"""Waiting for a job to finish: ``WorkerUtils.wait_for_job`` and its sync twin.

On its own autocommit connection a waiter LISTENs on ``errands:finished``, then
calls ``errands.watch_jobs``: that marks the job watched (the statement that
finishes it then keeps its finished row and notifies) and returns its state, so
a job that finished before the call, or while it subscribed, is found.  Then it
waits for a notification naming the job and reads the state again; a slow poll
is the fallback (a removed job sends nothing) and renews the watch's lease.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import errors
from psycopg.rows import dict_row

from errands import _queries as q
from errands._json import job_cursor
from errands.job import FinishedJob, Job

POLL_INTERVAL = 10.0
"""Seconds between two reads of the state when no notification came."""

LEASE = timedelta(minutes=5)
"""How long a watch keeps a finished row from pruning after the waiter's last
read (renewed on every read): long enough for a waiter that reconnects, short
enough that rows of waiters that went away do not linger."""


class WaitError(Exception):
    """Base of the errors of ``wait_for_job``; ``job_id`` is the job waited for."""

    def __init__(self, job_id: int, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class WaitTimeout(WaitError, TimeoutError):
    """The job had not finished when the timeout passed (it may still finish)."""

    def __init__(self, job_id: int, timeout: float) -> None:
        super().__init__(job_id, f"errands: job {job_id} did not finish within {timeout:g} s")
        self.timeout = timeout


class UnknownJob(WaitError, LookupError):
    """No such job in ``errands.jobs`` nor ``errands.finished_jobs``: a wrong id, a
    removed job, or one that finished with retention 0 before the wait began."""

    def __init__(self, job_id: int, message: str | None = None) -> None:
        super().__init__(
            job_id,
            message
            or f"errands: no job {job_id} in errands.jobs or errands.finished_jobs (unknown, "
            "removed, or finished with retention 0 before it was watched)",
        )


class JobFailed(WaitError):
    """The job failed for good (state ``failed``); ``job`` is its ``errands.jobs`` row."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.id, f"errands: job {job.id} failed: {job.last_error}")
        self.job = job


class JobCancelled(WaitError):
    """The job was cancelled; ``job`` is its ``errands.finished_jobs`` row."""

    def __init__(self, job: FinishedJob) -> None:
        super().__init__(job.id, f"errands: job {job.id} was cancelled: {job.last_error}")
        self.job = job


def _check_args(job_id: int, timeout: float | None, poll_interval: float) -> None:
    if isinstance(job_id, bool) or not isinstance(job_id, int):
        raise TypeError(f"errands: wait_for_job needs an int job id, got {job_id!r}")
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"errands: wait_for_job needs a timeout >= 0 or None, got {timeout!r}")
    if not poll_interval > 0:
        raise ValueError(f"errands: wait_for_job needs a poll_interval > 0, got {poll_interval!r}")


def _params(job_id: int) -> dict[str, Any]:
    return {"id": job_id, "lease": LEASE}


def _names(payload: str, job_id: int) -> bool:
    return str(job_id) in payload.split(",")


def _next_wait(job_id: int, deadline: float | None, timeout: float | None, poll: float) -> float:
    """Seconds to wait for a notification before reading the state again."""
    if deadline is None or timeout is None:
        return poll
    left = deadline - time.monotonic()
    if left <= 0:
        raise WaitTimeout(job_id, timeout)
    return min(poll, left)


def _outcome(
    state: str | None, finished: FinishedJob | None, job: Job | None
) -> FinishedJob | None:
    """The finished job, an exception for the other final states, or None: not yet."""
    if state == "completed" and finished is not None:
        return finished
    if state == "cancelled" and finished is not None:
        raise JobCancelled(finished)
    if state == "failed" and job is not None:
        raise JobFailed(job)
    return None


async def wait_async(
    conn: psycopg.AsyncConnection[Any], job_id: int, timeout: float | None, poll_interval: float
) -> FinishedJob:
    """Wait on ``conn`` (autocommit, used by nothing else; close it after: it LISTENs)."""
    _check_args(job_id, timeout, poll_interval)
    deadline = None if timeout is None else time.monotonic() + timeout
    params = _params(job_id)
    await conn.execute(q.WAIT_SESSION)
    # watch_jobs (a write) first and on each poll; after a notification only reads,
    # the finished row first (the usual news).
    renew = True
    while True:
        finished = job = None
        if renew:
            try:
                row = await (await conn.execute(q.WATCH_JOB, params)).fetchone()
            except errors.NoDataFound as exc:
                raise UnknownJob(job_id) from exc
        else:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(q.GET_FINISHED_JOB, params)).fetchall()
            finished = FinishedJob.from_row(rows[0]) if rows else None
            row = (finished.state,) if finished else await (
                await conn.execute(q.JOB_STATE, params)).fetchone()  # fmt: skip
        state = row[0] if row else None
        if state is None and not renew:  # removed meanwhile: watch_jobs says so
            renew = True
            continue
        if state in ("completed", "cancelled") and finished is None:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(q.GET_FINISHED_JOB, params)).fetchall()
            finished = FinishedJob.from_row(rows[0]) if rows else None
        elif state == "failed":
            jobs = await (await job_cursor(conn).execute(q.GET_JOB, params)).fetchall()
            job = jobs[0] if jobs else None
        result = _outcome(state, finished, job)
        if result is not None:
            return result
        wait = _next_wait(job_id, deadline, timeout, poll_interval)
        renew = True
        async for note in conn.notifies(timeout=wait):
            if _names(note.payload, job_id):
                renew = False
                break


def wait_sync(
    conn: psycopg.Connection[Any], job_id: int, timeout: float | None, poll_interval: float
) -> FinishedJob:
    """:func:`wait_async` on a blocking connection."""
    _check_args(job_id, timeout, poll_interval)
    deadline = None if timeout is None else time.monotonic() + timeout
    params = _params(job_id)
    conn.execute(q.WAIT_SESSION)
    renew = True
    while True:
        finished = job = None
        if renew:
            try:
                row = conn.execute(q.WATCH_JOB, params).fetchone()
            except errors.NoDataFound as exc:
                raise UnknownJob(job_id) from exc
        else:
            rows = conn.cursor(row_factory=dict_row).execute(q.GET_FINISHED_JOB, params).fetchall()
            finished = FinishedJob.from_row(rows[0]) if rows else None
            row = (finished.state,) if finished else conn.execute(q.JOB_STATE, params).fetchone()
        state = row[0] if row else None
        if state is None and not renew:
            renew = True
            continue
        if state in ("completed", "cancelled") and finished is None:
            rows = conn.cursor(row_factory=dict_row).execute(q.GET_FINISHED_JOB, params).fetchall()
            finished = FinishedJob.from_row(rows[0]) if rows else None
        elif state == "failed":
            jobs = job_cursor(conn).execute(q.GET_JOB, params).fetchall()
            job = jobs[0] if jobs else None
        result = _outcome(state, finished, job)
        if result is not None:
            return result
        wait = _next_wait(job_id, deadline, timeout, poll_interval)
        renew = True
        for note in conn.notifies(timeout=wait):
            if _names(note.payload, job_id):
                renew = False
                break

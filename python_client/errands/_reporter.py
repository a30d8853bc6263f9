"""Batched reporting of job outcomes: one ``worker_complete_jobs`` statement (and one
``worker_fail_jobs``, one ``worker_snooze_jobs``, one ``worker_fail_jobs_now``, one
``worker_cancel_jobs`` when there are such outcomes) for all the jobs that finished
while the previous flush ran.

A flush starts on the next loop iteration after the first outcome arrives (so
jobs finishing in the same iteration share it) and takes up to ``max_batch``
outcomes of each kind; outcomes arriving during a flush go into the next one.
A failed flush is retried with capped exponential backoff and jitter until it
succeeds (a lost connection is one warning per outage, see errands._retry; a job
whose lock was lost meanwhile resolves as such); serialization failures and
deadlocks are retried at once; once the reporter is closing, it gives up after
``give_up_after`` seconds and logs every job it could not report (they stay
locked until ``reset_locked`` frees them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from psycopg.rows import dict_row

from errands import _queries as q
from errands._connections import ConnectionSource
from errands._retry import Backoff, Outage, retry_transient
from errands.job import Job

logger = logging.getLogger("errands.worker")


class ReportError(Exception):
    """The outcome of a job could not be written to the database."""


@dataclass
class _Fail:
    job_id: int
    message: str
    payload: str | None
    future: asyncio.Future[Job | None]


@dataclass
class _Snooze:
    job_id: int
    delay: float
    future: asyncio.Future[bool]


@dataclass
class _Cancel:
    job_id: int
    reason: str | None
    future: asyncio.Future[bool]


_Sink: TypeAlias = "asyncio.Future[bool] | Callable[[bool | None], None]"
"""Where a completion's outcome goes: a future, or a callback (True: written;
False: the job's lock was lost; None: given up, see ReportError)."""


def _job_id(item: Any) -> int:
    """The job id of a pending outcome (a completion tuple or a _Fail/_Snooze)."""
    return int(item[0]) if isinstance(item, tuple) else int(item.job_id)


def _sink(item: Any) -> _Sink:
    """Where a pending outcome's result goes."""
    return item[1] if isinstance(item, tuple) else item.future  # type: ignore[no-any-return]


class Reporter:
    """Collects outcomes; :meth:`complete` and :meth:`fail` return futures that
    resolve once the outcome is in the database."""

    def __init__(
        self,
        source: ConnectionSource,
        worker_id: str,
        *,
        on_error: Callable[[BaseException, list[int]], None] | None = None,
        max_batch: int = 1000,
        give_up_after: float = 10.0,
        outage: Outage | None = None,
    ) -> None:
        self._outage = outage if outage is not None else Outage(worker_id, logger)
        self._source = source
        self._worker_id = worker_id
        self._on_error = on_error
        self._max_batch = max_batch
        self._give_up_after = give_up_after
        # (job id, sink, the task's result as JSON text or None)
        self._completes: list[tuple[int, _Sink, str | None]] = []
        self._fails: list[_Fail] = []
        self._fails_now: list[_Fail] = []
        self._snoozes: list[_Snooze] = []
        self._cancels: list[_Cancel] = []
        self._wakeup = asyncio.Event()
        self._closing_since: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="errands-reporter")

    @property
    def idle(self) -> bool:
        return not (
            self._completes or self._fails or self._fails_now or self._snoozes or self._cancels
        )

    def complete(self, job_id: int, result: str | None = None) -> asyncio.Future[bool]:
        """Resolves to ``True``, or ``False`` when the job's lock was lost (or its
        ``result``, JSON text, was over the size limit: the job then failed)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._completes.append((job_id, future, result))
        self._wakeup.set()
        return future

    def complete_then(
        self, job_id: int, callback: Callable[[bool | None], None], result: str | None = None
    ) -> None:
        """Like :meth:`complete`, without a future: ``callback(True)`` once written,
        ``callback(False)`` when the job's lock was lost, ``callback(None)`` when the
        reporter gave up.  The worker's hot path (no future, no extra loop turn)."""
        self._completes.append((job_id, callback, result))
        self._wakeup.set()

    def fail(self, job_id: int, message: str, payload: Any = None) -> asyncio.Future[Job | None]:
        """Resolves to the failed job's row, or ``None`` when its lock was lost.
        ``payload`` (unless ``None``) replaces the job's payload."""
        future: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
        encoded = json.dumps(payload) if payload is not None else None
        self._fails.append(_Fail(job_id, message, encoded, future))
        self._wakeup.set()
        return future

    def fail_now(self, job_id: int, message: str) -> asyncio.Future[Job | None]:
        """Fails the job for good (no retry): resolves to its row (attempts =
        max_attempts), or ``None`` when its lock was lost."""
        future: asyncio.Future[Job | None] = asyncio.get_running_loop().create_future()
        self._fails_now.append(_Fail(job_id, message, None, future))
        self._wakeup.set()
        return future

    def snooze(self, job_id: int, delay: float) -> asyncio.Future[bool]:
        """Runs the job again in ``delay`` seconds, giving its attempt back: resolves
        to ``True``, or ``False`` when its lock was lost."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._snoozes.append(_Snooze(job_id, delay, future))
        self._wakeup.set()
        return future

    def cancel(self, job_id: int, reason: str | None) -> asyncio.Future[bool]:
        """Ends the job cancelled (``reason`` as its last_error; None: the reason its
        cancellation was requested with): resolves to ``True``, or ``False`` when its
        lock was lost."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._cancels.append(_Cancel(job_id, reason, future))
        self._wakeup.set()
        return future

    async def close(self) -> None:
        """Flush what is pending (retrying for up to ``give_up_after`` s), then stop."""
        self._closing_since = time.monotonic()
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self.idle:
                if self._closing_since is not None:
                    return
                continue
            await asyncio.sleep(0)  # let jobs finishing in this iteration join the batch
            # One statement per kind of outcome and flush, none for a kind with nothing.
            for pending, flush in (
                (self._completes, self._flush_completes),
                (self._fails, self._flush_fails),
                (self._fails_now, self._flush_fails_now),
                (self._snoozes, self._flush_snoozes),
                (self._cancels, self._flush_cancels),
            ):
                batch = pending[: self._max_batch]
                del pending[: self._max_batch]
                if batch:
                    await self._retry(flush, batch, [_job_id(item) for item in batch])
            self._wakeup.set()  # more may have arrived; also re-checks closing

    async def _retry(self, flush: Callable[[Any], Any], batch: Any, ids: list[int]) -> None:
        backoff = Backoff(base=0.05, cap=5.0)
        while True:
            try:
                await retry_transient(lambda: flush(batch), "recording job outcomes")
                self._outage.recovered("report")
                return
            except Exception as exc:
                if self._on_error is not None:
                    self._on_error(exc, ids)
                closing = self._closing_since
                if closing is not None and time.monotonic() - closing > self._give_up_after:
                    logger.error(
                        "errands: could not record the outcome of jobs %s (%s); they stay "
                        "locked by %s until reset_locked or force_unlock_workers frees them",
                        ids, exc, self._worker_id,
                    )  # fmt: skip
                    for item in batch:
                        sink = _sink(item)
                        if not isinstance(sink, asyncio.Future):
                            sink(None)
                        elif not sink.done():
                            sink.set_exception(ReportError(str(exc)))
                    return
                self._outage.failed("report", exc, f"recording the outcome of {len(ids)} job(s)")
                await asyncio.sleep(backoff.next_delay())

    async def _flush_completes(self, batch: list[tuple[int, _Sink, str | None]]) -> None:
        # The ids as one array literal: cheaper to send than a list psycopg adapts.
        ids = "{" + ",".join([str(c[0]) for c in batch]) + "}"
        # Results only when a job has one: a batch without results sends NULL.
        results = [c[2] for c in batch]
        params = {
            "worker_id": self._worker_id,
            "ids": ids,
            "results": results if any(r is not None for r in results) else None,
        }
        async with self._source.connection() as conn:
            cur = await conn.execute(q.WORKER_COMPLETE_JOBS, params)
            done = {row[0] for row in await cur.fetchall()}
        for job_id, sink, _ in batch:
            if not isinstance(sink, asyncio.Future):
                sink(job_id in done)
            elif not sink.done():
                sink.set_result(job_id in done)

    async def _flush_fails(self, batch: list[_Fail]) -> None:
        payloads = [f.payload for f in batch]
        params = {
            "worker_id": self._worker_id,
            "ids": [f.job_id for f in batch],
            "messages": [f.message for f in batch],
            "payloads": payloads if any(p is not None for p in payloads) else None,
        }
        await self._failed_rows(q.WORKER_FAIL_JOBS, params, batch)

    async def _flush_fails_now(self, batch: list[_Fail]) -> None:
        params = {
            "worker_id": self._worker_id,
            "ids": [f.job_id for f in batch],
            "messages": [f.message for f in batch],
        }
        await self._failed_rows(q.WORKER_FAIL_JOBS_NOW, params, batch)

    async def _failed_rows(self, query: Any, params: dict[str, Any], batch: list[_Fail]) -> None:
        """Run a statement returning the failed jobs' rows; resolve each future to
        its job's row (``None``: the lock was lost)."""
        async with self._source.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query, params)
            rows = {row["id"]: Job.from_row(row) for row in await cur.fetchall()}
        for f in batch:
            if not f.future.done():
                f.future.set_result(rows.get(f.job_id))

    async def _flush_snoozes(self, batch: list[_Snooze]) -> None:
        params = {
            "worker_id": self._worker_id,
            "ids": [s.job_id for s in batch],
            # Seconds as float8: psycopg cannot send a list of timedeltas as interval[]
            # without per-item adaptation, and SQL turns them into intervals exactly.
            "seconds": [s.delay for s in batch],
        }
        async with self._source.connection() as conn:
            cur = await conn.execute(q.WORKER_SNOOZE_JOBS, params)
            done = {row[0] for row in await cur.fetchall()}
        for s in batch:
            if not s.future.done():
                s.future.set_result(s.job_id in done)

    async def _flush_cancels(self, batch: list[_Cancel]) -> None:
        params = {
            "worker_id": self._worker_id,
            "ids": [c.job_id for c in batch],
            "reasons": [c.reason for c in batch],
        }
        async with self._source.connection() as conn:
            cur = await conn.execute(q.WORKER_CANCEL_JOBS, params)
            done = {row[0] for row in await cur.fetchall()}
        for c in batch:
            if not c.future.done():
                c.future.set_result(c.job_id in done)

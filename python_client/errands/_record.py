"""Recording a try's outcome: which reporter call writes it (complete, fail,
fail for good, snooze, cancel), what the metrics and spans count it as, and the
events that depend on the written row (``job:failed``, ``job:lock_lost``, ...).

Used by :class:`~errands._executor.Executor` for the outcomes written while the
job holds its slot (failures, snoozes, cancellations, forced shutdown); a
completion that frees its slot at once goes to the reporter's batch directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from errands._reporter import Reporter, ReportError
from errands._task_results import (
    CANCELLED,
    COMPLETED,
    FAILED,
    RETRIED,
    SNOOZED,
    BatchFailure,
    failure_message,
)
from errands.job import Job
from errands.outcomes import Cancel, Fail, Snooze

if TYPE_CHECKING:
    from errands._observe import Observer


class Recorder:
    """Writes outcomes through ``reporter`` and emits their events with ``emit``."""

    def __init__(self, reporter: Reporter, emit: Callable[..., None]) -> None:
        self._reporter = reporter
        self._emit = emit
        self.observer: Observer | None = None
        """Counts (metrics) and spans (tracing) of the tries; None: neither."""

    async def record(
        self,
        job: Job,
        error: BaseException | None,
        replacement: Any,
        duration: float,
        result: str | None = None,
        *,
        cancelled: bool = False,
    ) -> None:
        """Report the outcome, then emit the events that depend on it (``cancelled``:
        the job's cancellation was requested, so it ends cancelled whatever it did)."""
        observer = self.observer
        started = time.perf_counter() - duration
        try:
            if cancelled or isinstance(error, Cancel):
                reason = error.reason if isinstance(error, Cancel) else None
                if observer is not None:
                    observer.ended(job, CANCELLED, duration, started)
                await self._record_cancel(job, reason, duration)
                return
            if isinstance(error, Snooze):
                if observer is not None:
                    observer.ended(job, SNOOZED, duration, started)
                await self._record_snooze(job, error, duration)
                return
            if error is None:
                if observer is not None:
                    observer.ended(job, COMPLETED, duration, started)
                self._emit("job:success", job=job, duration=duration)
                if not await self._reporter.complete(job.id, result):
                    self._emit("job:lock_lost", job=job)
            else:
                data = {"batch_errors": error.errors} if isinstance(error, BatchFailure) else {}
                self._emit("job:error", job=job, error=error, duration=duration, data=data)
                if isinstance(error, Fail) and not error.retry:
                    # For good: a batch fails as a whole, its payload kept.
                    row = await self._reporter.fail_now(job.id, failure_message(error))
                else:
                    row = await self._reporter.fail(job.id, failure_message(error), replacement)
                if observer is not None:
                    # The written row says whether a retry follows (job: its lock was lost).
                    left = (row or job).has_attempts_left and not (
                        isinstance(error, Fail) and not error.retry
                    )
                    observer.ended(job, RETRIED if left else FAILED, duration, started, error)
                if row is None:
                    self._emit("job:lock_lost", job=job)
                elif not row.has_attempts_left:
                    self._emit("job:failed", job=row, error=error, data=data)
        except ReportError:
            return  # logged by the reporter
        self._emit("job:complete", job=job, error=error, duration=duration)

    async def _record_snooze(self, job: Job, snooze: Snooze, duration: float) -> None:
        """A try that raised :class:`Snooze`: not a failure, and not an attempt."""
        if await self._reporter.snooze(job.id, snooze.delay):
            self._emit("job:snooze", job=job, duration=duration, data={"delay": snooze.delay})
        else:
            self._emit("job:lock_lost", job=job)
        self._emit("job:complete", job=job, duration=duration)

    async def _record_cancel(self, job: Job, reason: str | None, duration: float) -> None:
        """A cancelled try (errands.Cancel, or a cancellation request): never retried."""
        if await self._reporter.cancel(job.id, reason):
            self._emit("job:cancelled", job=job, duration=duration, data={"reason": reason})
        else:
            self._emit("job:lock_lost", job=job)
        self._emit("job:complete", job=job, duration=duration)

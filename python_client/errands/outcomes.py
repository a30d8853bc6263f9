"""Outcomes a task chooses by raising: :class:`Snooze`, :class:`Fail` and :class:`Cancel`.

All work from async and sync tasks.  The worker reports them in its batches
through their SQL counterparts, ``errands.worker_snooze_jobs``,
``errands.worker_fail_jobs_now`` and ``errands.worker_cancel_jobs``, so SQL decides
the job's state, as for any outcome.  A batch job (list payload) that raises one
of them snoozes, fails or is cancelled as a whole; one *returned* as an item's
result is an ordinary failed item (the batch's failed items are retried).
"""

from __future__ import annotations

import math
from datetime import timedelta


class Snooze(Exception):
    """Run this job again after ``delay`` (seconds, or a timedelta); this try does not
    count as an attempt.  The job goes back to ``scheduled``, keeping its key, payload
    and queue (a named queue is unlocked meanwhile)."""

    def __init__(self, delay: float | timedelta) -> None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"Snooze delay must be seconds or a timedelta, got {delay!r}")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"Snooze delay must be finite and >= 0, got {delay!r}")
        self.delay = float(seconds)
        super().__init__(f"snoozed for {format_delay(self.delay)}")


class Fail(Exception):
    """Fail this job with ``reason`` as its ``last_error``.  With ``retry=False`` (the
    default) it becomes ``failed`` at once, whatever attempts it had left
    (``reschedule_jobs`` can still revive it); ``retry=True`` is an ordinary failed
    try (retried with backoff) whose ``last_error`` is just ``reason``."""

    def __init__(self, reason: str, *, retry: bool = False) -> None:
        self.reason = str(reason)
        self.retry = retry
        super().__init__(self.reason)


class Cancel(Exception):
    """End this job ``cancelled`` with ``reason`` as its ``last_error``: it is never
    retried (it moves to ``errands.finished_jobs`` when its task keeps history)."""

    def __init__(self, reason: str = "cancelled by the task") -> None:
        self.reason = str(reason)
        super().__init__(self.reason)


def format_delay(seconds: float) -> str:
    """``30 s``, ``1.5 s``, ``2 min 5 s``, ``3 h 0 min``: for log lines."""
    if seconds < 60:
        return f"{seconds:g} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"

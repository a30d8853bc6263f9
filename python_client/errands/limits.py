"""Flow control from Python: the typed limits and the rows of ``errands.queues``.

The SQL functions (``errands.set_queue_limits`` and friends, see
``docs/flow-control.md``) do the work; :class:`~errands.utils.WorkerUtils` calls them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any


@dataclass(frozen=True)
class Limits:
    """Limits of a queue or task (or of every name matching a ``'prefix*'`` pattern).

    ``None`` removes that limit: a named queue then runs one job at a time (a serial
    queue), a task has no concurrency limit.  ``rate_limit`` jobs may start in any
    window of ``rate_period``; the two go together.
    """

    concurrency: int | None = None
    rate_limit: int | None = None
    rate_period: timedelta | None = None

    def params(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "concurrency": self.concurrency,
            "rate_limit": self.rate_limit,
            "rate_period": self.rate_period,
        }


@dataclass(frozen=True)
class QueueInfo:
    """A named queue as ``errands.queues`` shows it: the limits that apply to it,
    its running jobs and its backlog (jobs due and waiting)."""

    queue_name: str
    concurrency: int
    rate_limit: int | None
    rate_period: timedelta | None
    paused: bool
    running: int
    backlog: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> QueueInfo:
        return cls(**row)


@dataclass(frozen=True)
class TaskLimitInfo:
    """A task a limit or pause applies to (``errands.task_limits``); ``running`` is
    counted while it has a concurrency limit."""

    task_identifier: str
    concurrency: int | None
    rate_limit: int | None
    rate_period: timedelta | None
    paused: bool
    running: int | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TaskLimitInfo:
        return cls(**row)

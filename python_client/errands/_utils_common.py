"""What :mod:`errands.utils`' two classes share: parameters of the admin calls."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar

from psycopg.types.json import Jsonb

from errands.flows import FlowLike, flow_json
from errands.job import Job

DEFAULT_CLEANUP = ("GC_JOB_QUEUES",)

T = TypeVar("T")


def _jobs(rows: Iterable[dict[str, Any]]) -> list[Job]:
    return [Job.from_row(row) for row in rows if row["id"] is not None]


def _reschedule_params(
    ids: Iterable[int],
    run_at: datetime | None,
    priority: int | None,
    attempts: int | None,
    max_attempts: int | None,
) -> dict[str, Any]:
    return {
        "ids": list(ids), "run_at": run_at, "priority": priority, "attempts": attempts,
        "max_attempts": max_attempts,
    }  # fmt: skip


def _flow_params(flow: FlowLike) -> dict[str, Any]:
    return {"flow": Jsonb(flow_json(flow))}


def _cleanup_params(tasks: Iterable[str], keep: Iterable[str]) -> dict[str, Any]:
    return {"tasks": list(tasks), "keep": list(keep)}


def _filter_params(task: str, queue: str | None, state: str | None) -> dict[str, Any]:
    return {"task": task, "queue": queue, "state": state}



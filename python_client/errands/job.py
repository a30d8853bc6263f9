"""Typed views of job rows (:class:`Job`) and of job specifications (:class:`JobSpec`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from psycopg._cursor_base import BaseCursor
    from psycopg.rows import RowMaker

JobKeyMode = Literal["replace", "preserve_run_at", "unsafe_dedupe"]


@dataclass(frozen=True)
class Job:
    """One row of the ``errands.jobs`` view.

    ``attempts`` counts the try in progress while a worker runs the job (it is
    incremented when the job is fetched), so inside a task it is 1-based.
    ``flags`` is the job's set of flags (empty when it has none).
    """

    id: int
    task_identifier: str
    payload: Any
    queue_name: str | None
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    key: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    locked_at: datetime | None
    locked_by: str | None
    revision: int
    flags: frozenset[str] = field(default_factory=frozenset)
    timeout: float | None = None
    """This job's own task timeout in seconds (``add_job(..., timeout=)``), if any."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """Build a job from a ``dict_row`` of ``errands.jobs`` (or a function returning it)."""
        if row["id"] is None:
            raise ValueError("errands: expected a job row, got an empty (NULL) row")
        flags = row.get("flags")
        return cls(
            id=row["id"],
            task_identifier=row["task_identifier"],
            payload=row["payload"],
            queue_name=row["queue_name"],
            priority=row["priority"],
            run_at=row["run_at"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            key=row["key"],
            last_error=row["last_error"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            locked_at=row["locked_at"],
            locked_by=row["locked_by"],
            revision=row["revision"],
            flags=frozenset(flags) if flags else frozenset(),
            timeout=_seconds(row.get("timeout")),
        )

    @classmethod
    def row_factory(cls, cursor: BaseCursor[Any, Any]) -> RowMaker[Job]:
        """A psycopg row factory building jobs straight from ``errands.jobs`` rows.

        The worker fetches hundreds of jobs per call: this skips the intermediate
        dict and the frozen dataclass's per-field ``__setattr__`` (same result as
        :meth:`from_row`)."""
        if cursor.description is None:
            raise ValueError("errands: expected a result with job rows")
        names = [column.name for column in cursor.description]
        flags_at = names.index("flags") if "flags" in names else None
        timeout_at = names.index("timeout") if "timeout" in names else None
        new = object.__new__
        no_flags: frozenset[str] = frozenset()

        def make(values: Sequence[Any]) -> Job:
            if values[0] is None:
                raise ValueError("errands: expected a job row, got an empty (NULL) row")
            job: Job = new(cls)
            attrs = job.__dict__
            # psycopg gives one value per column: no strict zip check per row
            attrs.update(zip(names, values, strict=False))
            flags = values[flags_at] if flags_at is not None else None
            attrs["flags"] = frozenset(flags) if flags else no_flags
            if timeout_at is not None and values[timeout_at] is not None:
                attrs["timeout"] = _seconds(values[timeout_at])
            return job

        return make

    @property
    def has_attempts_left(self) -> bool:
        """Whether a failure of this try would be retried."""
        return self.attempts < self.max_attempts


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


@dataclass(frozen=True)
class JobSpec:
    """One job for ``add_jobs`` (the ``errands.job_spec`` type); ``None`` = SQL default."""

    identifier: str
    payload: Any = None
    queue_name: str | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    job_key: str | None = None
    priority: int | None = None
    flags: Sequence[str] | None = None

    def to_json(self) -> dict[str, Any]:
        """The spec as a JSON object for ``json_populate_recordset``; fields left
        ``None`` are left out (the same NULL to the server, and for a bulk call of
        plain specs a sixth of the text to send and parse)."""
        out: dict[str, Any] = {"identifier": self.identifier}
        if self.payload is not None:
            out["payload"] = self.payload
        if self.queue_name is not None:
            out["queue_name"] = self.queue_name
        if self.run_at is not None:
            out["run_at"] = self.run_at.isoformat()
        if self.max_attempts is not None:
            out["max_attempts"] = self.max_attempts
        if self.job_key is not None:
            out["job_key"] = self.job_key
        if self.priority is not None:
            out["priority"] = self.priority
        if self.flags is not None:
            out["flags"] = list(self.flags)
        return out


SpecLike = JobSpec | Mapping[str, Any]
"""A :class:`JobSpec` or a mapping with the same keys (``identifier`` required)."""


# Spec keys whose JSON form is the value itself (not run_at, not flags).
_PLAIN_SPEC_KEYS = frozenset(
    ["identifier", "payload", "queue_name", "max_attempts", "job_key", "priority"]
)


def specs_json(specs: Iterable[SpecLike]) -> str:
    """Serialise specs into the JSON array ``ADD_JOBS`` expects."""
    out: list[dict[str, Any]] = []
    for spec in specs:
        if isinstance(spec, JobSpec):
            out.append(spec.to_json())
        elif type(spec) is dict and "identifier" in spec and spec.keys() <= _PLAIN_SPEC_KEYS:
            # What JobSpec(**spec).to_json() gives, without building the
            # dataclass (most of the client's time in a big bulk call).
            out.append({k: v for k, v in spec.items() if v is not None})
        else:
            out.append(JobSpec(**spec).to_json())
    return json.dumps(out)

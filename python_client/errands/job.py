"""Typed views of job rows (:class:`Job`, :class:`FinishedJob`) and of job specifications
(:class:`JobSpec`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from psycopg._cursor_base import BaseCursor
    from psycopg.rows import RowMaker

JobKeyMode = Literal["replace", "preserve_run_at", "unsafe_dedupe", "abort_replace"]


JobState = Literal["scheduled", "pending", "running", "waiting", "retrying", "failed"]
"""A job's state, as the ``state`` column of ``errands.jobs`` computes it."""


@dataclass(frozen=True)
class Job:
    """One row of the ``errands.jobs`` view: its columns, in the view's order.

    ``attempts`` counts the try in progress while a worker runs the job (it is
    incremented when the job is fetched), so inside a task it is 1-based.
    ``flags`` is the job's set of flags (empty when it has none).  ``state`` is
    one of :data:`JobState` (computed by the database when the row was read).
    """

    id: int
    queue_name: str | None
    task_identifier: str
    payload: Any
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    key: str | None
    locked_at: datetime | None
    locked_by: str | None
    revision: int
    flags: frozenset[str]
    timeout: float | None
    """This job's own task timeout in seconds (``add_job(..., timeout=)``), if any."""
    state: str
    traceparent: str | None = None
    """The W3C trace context of the span that enqueued the job (``errands.tracing``),
    if any."""
    errors: list[dict[str, Any]] | None = None
    """Its failed tries, oldest first, the last 20: dicts with ``attempt``,
    ``started_at``, ``failed_at`` (ISO strings), ``worker`` and ``error``
    (``None``: it never failed)."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """Build a job from a ``dict_row`` of ``errands.jobs`` (or a function returning it)."""
        if row["id"] is None:
            raise ValueError("errands: expected a job row, got an empty (NULL) row")
        # traceparent and errors (versions 25, 26) may be missing from a hand-made row.
        values = {name: row[name] for name in _FIELDS if name not in _OPTIONAL or name in row}
        values["flags"] = frozenset(values["flags"]) if values["flags"] else frozenset()
        values["timeout"] = _seconds(values["timeout"])
        return cls(**values)

    @classmethod
    def row_factory(cls, cursor: BaseCursor[Any, Any]) -> RowMaker[Job]:
        """A psycopg row factory building jobs straight from ``errands.jobs`` rows.

        The worker fetches hundreds of jobs per call: this skips the intermediate
        dict and the frozen dataclass's per-field ``__setattr__`` (same result as
        :meth:`from_row`)."""
        if cursor.description is None:
            raise ValueError("errands: expected a result with job rows")
        names = [column.name for column in cursor.description]
        missing = [name for name in _FIELDS if name not in names and name not in _OPTIONAL]
        if missing:
            raise ValueError(f"errands: a job row needs the columns {missing}")
        flags_at = names.index("flags")
        timeout_at = names.index("timeout")
        new = object.__new__
        no_flags: frozenset[str] = frozenset()

        def make(values: Sequence[Any]) -> Job:
            if values[0] is None:
                raise ValueError("errands: expected a job row, got an empty (NULL) row")
            job: Job = new(cls)
            attrs = job.__dict__
            # psycopg gives one value per column: no strict zip check per row
            attrs.update(zip(names, values, strict=False))
            flags = values[flags_at]
            attrs["flags"] = frozenset(flags) if flags else no_flags
            if values[timeout_at] is not None:
                attrs["timeout"] = _seconds(values[timeout_at])
            return job

        return make

    @property
    def has_attempts_left(self) -> bool:
        """Whether a failure of this try would be retried."""
        return self.attempts < self.max_attempts


_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Job))
"""The columns of ``errands.jobs``, in order (tests_py/test_job_row.py checks it)."""
_OPTIONAL = frozenset({"traceparent", "errors"})
"""Fields a row may lack (they have a default)."""


FinishedState = Literal["completed", "cancelled"]
"""The state of a finished job (``errands.finished_jobs.state``); ``cancelled`` only
once cancelling exists."""


@dataclass(frozen=True)
class FinishedJob:
    """One row of the ``errands.finished_jobs`` view (a job kept after it finished,
    for its task's retention): its columns, in the view's order.  ``result`` is the
    task's return value (``None``: none)."""

    id: int
    queue_name: str | None
    task_identifier: str
    payload: Any
    priority: int
    attempts: int
    max_attempts: int
    last_error: str | None
    key: str | None
    created_at: datetime
    finished_at: datetime
    state: str
    result: Any
    errors: list[dict[str, Any]] | None = None
    """Its failed tries, as :attr:`Job.errors`."""
    run_at: datetime | None = None
    """When its last try was due (for a retry, the end of its backoff)."""
    started_at: datetime | None = None
    """When its last try started (``None``: it finished without running)."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> FinishedJob:
        """Build it from a ``dict_row`` of ``errands.finished_jobs``."""
        return cls(**{name: row[name] for name in _FINISHED_FIELDS if name in row
                      or name not in _FINISHED_OPTIONAL})


_FINISHED_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(FinishedJob))
_FINISHED_OPTIONAL = frozenset({"errors", "run_at", "started_at"})  # added in version 26


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

"""Logging: one readable line per job outcome, and an optional JSON formatter.

:func:`attach_job_logging` subscribes to a worker's :class:`~errands.events.Events`
and logs through the ``errands.worker`` logger::

    INFO  errands.worker: send_email #42 (attempt 1/25) succeeded in 12.3 ms
    WARNING errands.worker: send_email #43 (attempt 2/25) failed in 4.1 ms: ValueError: bad
    ERROR errands.worker: send_email #44 (attempt 25/25) failed permanently: ValueError: bad
    INFO  errands.worker: send_email #45 (attempt 1/25) snoozed for 30 s (this try is not counted)

Failures log the task's traceback.  ``quiet=True`` drops the success lines.
Attaching twice to the same ``Events`` is a no-op.
:func:`configure_logging` installs a handler on the ``errands`` logger, in text or
JSON (:class:`JsonFormatter`: one JSON object per line).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import IO, Any

from errands.events import Event, Events
from errands.job import Job
from errands.outcomes import format_delay

logger = logging.getLogger("errands.worker")

#: Record attributes copied into JSON log lines when present.
EXTRA_FIELDS = (
    "worker_id", "job_id", "task_identifier", "attempt", "max_attempts", "queue_name",
    "duration_ms", "error", "event",
)  # fmt: skip


def _describe(job: Job) -> str:
    return f"{job.task_identifier} #{job.id} (attempt {job.attempts}/{job.max_attempts})"


def _extra(event: Event) -> dict[str, Any]:
    extra: dict[str, Any] = {"event": event.name, "worker_id": event.worker_id}
    if event.job is not None:
        extra.update(
            job_id=event.job.id,
            task_identifier=event.job.task_identifier,
            attempt=event.job.attempts,
            max_attempts=event.job.max_attempts,
            queue_name=event.job.queue_name,
        )
    if event.duration is not None:
        extra["duration_ms"] = round(event.duration * 1000, 1)
    if event.error is not None:
        extra["error"] = error_message(event.error)
    return extra


def error_message(error: BaseException) -> str:
    """How errors are written to ``last_error``: ``"ValueError: message"``."""
    return f"{type(error).__name__}: {error}"


def attach_job_logging(
    events: Events, *, quiet: bool = False, log: logging.Logger | None = None
) -> None:
    """Log job outcomes and worker life-cycle events of ``events`` (see module doc)."""
    log = log or logger

    def on_success(event: Event) -> None:
        if event.job is not None and log.isEnabledFor(logging.INFO):
            log.info(
                "%s succeeded in %.1f ms", _describe(event.job), (event.duration or 0) * 1000,
                extra=_extra(event),
            )  # fmt: skip

    def on_error(event: Event) -> None:
        if event.job is None or event.error is None:
            return
        err = event.error
        log.warning(
            "%s failed in %.1f ms: %s",
            _describe(event.job), (event.duration or 0) * 1000, error_message(err),
            exc_info=(type(err), err, err.__traceback__) if err.__traceback__ else None,
            extra=_extra(event),
        )  # fmt: skip

    def on_failed(event: Event) -> None:
        if event.job is not None:
            log.error(
                "%s failed permanently (no attempts left): %s",
                _describe(event.job), event.job.last_error, extra=_extra(event),
            )  # fmt: skip

    def on_snooze(event: Event) -> None:
        if event.job is not None and log.isEnabledFor(logging.INFO):
            log.info(
                "%s snoozed for %s (this try is not counted)", _describe(event.job),
                format_delay(event.data.get("delay", 0.0)), extra=_extra(event),
            )  # fmt: skip

    def on_cancelled(event: Event) -> None:
        if event.job is not None and log.isEnabledFor(logging.INFO):
            reason = event.data.get("reason")
            log.info(
                "%s cancelled%s", _describe(event.job),
                f": {reason}" if reason else " (its cancellation was requested)",
                extra=_extra(event),
            )  # fmt: skip

    def on_lock_lost(event: Event) -> None:
        if event.job is not None:
            log.warning(
                "%s: the job's lock was lost before its outcome was recorded; "
                "it may run again", _describe(event.job), extra=_extra(event),
            )  # fmt: skip

    def on_worker(event: Event) -> None:
        if event.name == "worker:start":
            log.info(
                "worker %s started (tasks: %s)",
                event.worker_id, ", ".join(event.data.get("tasks", ())), extra=_extra(event),
            )  # fmt: skip
        elif event.name == "worker:stop":
            if event.error is None:  # a crash is logged by the worker, with its traceback
                log.info("worker %s stopped", event.worker_id, extra=_extra(event))
        elif event.name == "worker:shutdown":
            signal = event.data.get("signal")
            log.info("worker %s shutting down%s", event.worker_id,
                     f" on {signal}" if signal else "", extra=_extra(event))  # fmt: skip
        elif event.name == "worker:shutdown:force":
            log.warning("worker %s aborting %d running job(s)", event.worker_id,
                        len(event.data.get("job_ids", ())), extra=_extra(event))  # fmt: skip
        elif event.name == "worker:return":
            log.info("worker %s returned %d unstarted job(s)", event.worker_id,
                     len(event.data.get("job_ids", ())), extra=_extra(event))  # fmt: skip
        elif event.name == "worker:sweep" and event.data.get("count"):
            log.warning("reset %d job(s) whose lock had expired", event.data["count"],
                        extra=_extra(event))  # fmt: skip

    if getattr(events, "_errands_job_logging", False):
        return  # already attached (an Events object reused for several runs)
    setattr(events, "_errands_job_logging", True)  # noqa: B010
    if not quiet:
        events.on("job:success", on_success)
    events.on("job:error", on_error)
    events.on("job:failed", on_failed)
    events.on("job:lock_lost", on_lock_lost)
    events.on("job:snooze", on_snooze)
    events.on("job:cancelled", on_cancelled)
    # Operational errors (fetch, report, LISTEN, sweep, crash) are logged by the
    # worker itself, whether or not this is attached.
    for name in (
        "worker:start", "worker:stop", "worker:shutdown", "worker:shutdown:force",
        "worker:return", "worker:sweep",
    ):  # fmt: skip
        events.on(name, on_worker)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, the job
    fields of :data:`EXTRA_FIELDS` when set, and ``traceback`` for exceptions."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(
    *, level: int | str = logging.INFO, json_format: bool = False, stream: IO[str] | None = None
) -> logging.Handler:
    """Send the ``errands`` loggers to ``stream`` (stderr) as text or JSON lines.

    Returns the handler (remove it with ``logging.getLogger("errands").removeHandler``).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_format else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger("errands")
    root.addHandler(handler)
    root.setLevel(level)
    return handler

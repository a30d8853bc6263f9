"""What a try's return value or exception means: the errors the worker records,
``last_error`` texts, a result as JSON, and the per-item outcome of batch jobs."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Sequence
from typing import Any

from errands.logs import error_message
from errands.outcomes import Fail

logger = logging.getLogger("errands.worker")

COMPLETED, FAILED, RETRIED, CANCELLED, SNOOZED = range(5)
"""How a try ended, as the worker's metrics and spans count it."""
OUTCOMES = ("completed", "failed", "retried", "cancelled", "snoozed")
"""Their names (the ``outcome`` label), indexed by the constants above."""


class WorkerShutdown(Exception):
    """The error recorded for jobs still running when the worker stopped."""


class TaskTimeout(Exception):
    """The error recorded for a try that ran longer than its timeout (the job's own,
    else ``@task(timeout=...)``)."""


class BatchFailure(Exception):
    """Some items of a batch job failed; ``errors`` holds one exception per failed item."""

    def __init__(self, errors: Sequence[BaseException]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(error_message(e) for e in self.errors))


def failure_message(error: BaseException) -> str:
    """The ``last_error`` text of a failed try."""
    if isinstance(error, BatchFailure):
        return "Batch failures:\n" + "\n".join(error_message(e) for e in error.errors)
    if isinstance(error, Fail):
        return error.reason  # the task chose the wording
    return error_message(error)


def encode_result(result: Any) -> str:
    """A task's return value as JSON text for ``finished_jobs.result``; a clear
    error naming the type when it is not JSON data (the job then fails)."""
    try:
        return json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"errands: the task returned a {type(result).__name__} that is not "
            f"JSON-serialisable ({exc}); return JSON data or None"
        ) from None


async def batch_outcome(
    payload: Any, result: Any
) -> tuple[BaseException | None, list[Any] | None, Any]:
    """Batch jobs: a list payload and a list result of the same length.  Entries that
    are exceptions (or awaitables that raise) are failed items: returns the failure
    and the replacement payload (the failed items); ``(None, None, values)``
    otherwise, values being the result with awaitables replaced by their values
    (the job's result)."""
    if not isinstance(payload, list) or not isinstance(result, (list, tuple)):
        return None, None, result
    if len(result) != len(payload):
        logger.warning(
            "errands: a batch job returned %d results for %d payload items; "
            "treating the job as a success", len(result), len(payload),
        )  # fmt: skip
        return None, None, result
    awaited = await asyncio.gather(*(_settle(entry) for entry in result), return_exceptions=True)
    failed = [i for i, value in enumerate(awaited) if isinstance(value, BaseException)]
    if not failed:
        return None, None, list(awaited)
    errors = [awaited[i] for i in failed]
    return (
        BatchFailure([e for e in errors if isinstance(e, BaseException)]),
        [payload[i] for i in failed],
        None,
    )


async def _settle(entry: Any) -> Any:
    if isinstance(entry, BaseException):
        raise entry
    if inspect.isawaitable(entry):
        return await entry
    return entry

"""Example tasks, run by `make demo`:

    errands worker --tasks examples/tasks.py

A task is a function ``(payload, helpers)`` marked with ``@task``; its identifier is
the function name.  Raising an exception fails the try: the job is retried with
exponential backoff (2.7 s, 7.4 s, 20 s, ...) until ``max_attempts`` (25) is reached.
"""

from __future__ import annotations

import time
from typing import Any

from errands import Helpers, task


@task
def hello(payload: dict[str, Any], helpers: Helpers) -> None:
    """Succeeds at once."""
    helpers.logger.info("hello, %s!", payload.get("name", "world"))


@task
def flaky(payload: dict[str, Any], helpers: Helpers) -> None:
    """Fails on its first attempt, succeeds when retried (~2.7 s later)."""
    if helpers.job.attempts == 1:
        raise ConnectionError("the flaky service is down (only on the first attempt)")
    helpers.logger.info("worked on attempt %d", helpers.job.attempts)


@task
def send_emails(payload: list[str], helpers: Helpers) -> list[Exception | None]:
    """A batch job: the payload is a list, the result has one entry per item.

    Entries that are exceptions are failed items: the job is retried with only
    those items as its payload; the others are done.
    """
    results: list[Exception | None] = []
    for address in payload:
        if address.startswith("bounce") and helpers.job.attempts == 1:
            helpers.logger.warning("could not send to %s, will retry", address)
            results.append(RuntimeError(f"mailbox of {address} is full"))
        else:
            helpers.logger.info("sent to %s", address)
            results.append(None)
    return results


@task
def queued_step(payload: dict[str, Any], helpers: Helpers) -> None:
    """Jobs of the named queue ``serial-demo`` run one at a time, in order."""
    time.sleep(0.2)  # however long a step takes, the next one waits for it
    helpers.logger.info("step %d of %d", payload["step"], payload["of"])

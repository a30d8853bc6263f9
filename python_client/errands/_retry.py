"""Surviving database faults: one place for backoff, outage logging and the retry of
serialization failures and deadlocks.

* :class:`Backoff` -- capped exponential backoff with jitter, for reconnecting (the
  LISTEN connection, the fetch loop, reporting).
* :class:`Outage` -- a worker logs ONE warning when its database becomes unreachable
  (a restart, ``pg_terminate_backend``, a network drop) and one info line when it is
  back, however many calls fail in between (those are logged at DEBUG).
* :func:`retry_transient` / :func:`retry_transient_sync` -- run one statement (one
  transaction) again when PostgreSQL aborted it with SQLSTATE 40001
  (serialization_failure) or 40P01 (deadlock_detected); safe because the aborted
  transaction changed nothing.
* :func:`connection_alive` -- a pool ``check`` that discards pooled connections the
  server has closed (restart, ``pg_terminate_backend``) without a round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import ConnStatus

from errands.logs import error_message

logger = logging.getLogger("errands.worker")

T = TypeVar("T")

BACKOFF_BASE: Final = 0.1
"""Seconds before the first retry after a connection failure."""
BACKOFF_CAP: Final = 10.0
"""The longest wait between two reconnection attempts."""
TRANSIENT_TRIES: Final = 10
"""How many times one statement runs when it keeps hitting 40001/40P01."""
TRANSIENT_SQLSTATES: Final = frozenset({"40001", "40P01"})


class Backoff:
    """``base * 2**n`` seconds (n = failures so far - 1), capped at ``cap``, times a
    random factor in [0.5, 1] so that many workers do not retry in step."""

    def __init__(self, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        """Count a failure and return how long to wait before the next try."""
        self.failures += 1
        delay: float = min(self.cap, self.base * 2.0 ** min(self.failures - 1, 30))
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0


def is_transient(exc: BaseException) -> bool:
    """Serialization failure or deadlock: the statement can simply run again."""
    return isinstance(exc, psycopg.Error) and exc.sqlstate in TRANSIENT_SQLSTATES


def is_connection_error(exc: BaseException) -> bool:
    """The database could not be reached or the connection broke (not a SQL error)."""
    if is_transient(exc):
        return False
    if isinstance(exc, pg_errors.AdminShutdown | pg_errors.CannotConnectNow):
        return True
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        # Class 08 (connection exception), 57P0x (shutdown/crash), or no SQLSTATE
        # at all (libpq: "server closed the connection unexpectedly", "the
        # connection is lost", connection refused).
        state = exc.sqlstate
        return state is None or state.startswith(("08", "57P"))
    from psycopg_pool import PoolTimeout  # here: the CLI imports this module, not the pool

    return isinstance(exc, PoolTimeout | OSError)


class Outage:
    """Tracks whether the database is reachable, for logging.

    Each part of the worker (``"listen"``, ``"fetch"``, ``"heartbeat"``, ...) reports
    its connection failures with :meth:`failed` and its successes with
    :meth:`recovered`.  The outage starts (one WARNING) when a first part fails
    while none was failing, and ends (one INFO line) when every failing part has
    succeeded again; failures in between are logged at DEBUG.  Errors that are
    not connection errors are no outage: logged as a warning every time."""

    def __init__(self, worker_id: str, log: logging.Logger = logger) -> None:
        self.worker_id = worker_id
        self.log = log
        self.since: float | None = None
        self.failing: set[str] = set()
        self.count = 0
        """Outages so far."""

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(
        self, part: str, exc: BaseException, what: str | None = None, *, hold: bool = True
    ) -> None:
        """``part`` failed with ``exc``; ``what`` describes the call in the log.  A part
        that will not retry soon passes ``hold=False``: it does not keep the outage
        open (during one, its failure is logged at DEBUG; otherwise as a warning)."""
        what = what or part
        if not is_connection_error(exc) or (not hold and self.since is None):
            self.log.warning("errands: %s failed: %s", what, error_message(exc))
            return
        if not hold:
            self.log.debug("errands: %s failed during the outage: %s", what, error_message(exc))
            return
        self.failing.add(part)
        if self.since is None:
            self.since = time.monotonic()
            self.count += 1
            self.log.warning(
                "errands: lost the database connection (%s: %s); reconnecting with backoff, "
                "running jobs go on",
                what, error_message(exc),
            )  # fmt: skip
        else:
            self.log.debug("errands: %s failed during the outage: %s", what, error_message(exc))

    def recovered(self, part: str) -> None:
        """``part`` succeeded: the outage ends when no part is failing any more."""
        if self.since is None or part not in self.failing:
            return
        self.failing.discard(part)
        if self.failing:
            return
        duration = time.monotonic() - self.since
        self.since = None
        self.log.info("errands: database connection restored after %.1f s", duration)


async def retry_transient(call: Callable[[], Awaitable[T]], what: str = "statement") -> T:
    """``await call()``, running it again (up to :data:`TRANSIENT_TRIES` times, with a
    short jittered pause) while it fails with SQLSTATE 40001 or 40P01.  ``call``
    must take its own connection and run one transaction."""
    attempt = 0
    while True:
        try:
            return await call()
        except psycopg.Error as exc:
            attempt += 1
            if not is_transient(exc) or attempt >= TRANSIENT_TRIES:
                raise
            logger.info("errands: %s hit %s (%s); retrying", what, exc.sqlstate, error_message(exc))
            await asyncio.sleep(_transient_delay(attempt))


def retry_transient_sync(call: Callable[[], T], what: str = "statement") -> T:
    """Blocking :func:`retry_transient`."""
    attempt = 0
    while True:
        try:
            return call()
        except psycopg.Error as exc:
            attempt += 1
            if not is_transient(exc) or attempt >= TRANSIENT_TRIES:
                raise
            logger.info("errands: %s hit %s (%s); retrying", what, exc.sqlstate, error_message(exc))
            time.sleep(_transient_delay(attempt))


def _transient_delay(attempt: int) -> float:
    return min(1.0, 0.01 * 2.0**attempt) * random.uniform(0.5, 1.0)


async def connection_alive(conn: psycopg.AsyncConnection[Any]) -> None:
    """Pool ``check``: raise when the server has closed ``conn``.

    Reads what the server sent without waiting (``PQconsumeInput`` on libpq's
    non-blocking socket): a connection ended by a restart or
    ``pg_terminate_backend`` has the server's FATAL message and EOF waiting, which
    turns it BAD.  No round trip: a healthy connection costs two ``recv`` calls.  A
    silently dropped network is not detected here; the call that uses the
    connection fails and the pool discards it."""
    pgconn = conn.pgconn
    # Twice: the first read may return the server's FATAL message, the second then
    # sees the EOF that turns the connection BAD.
    for _ in range(2):
        if pgconn.status != ConnStatus.OK:
            break
        with contextlib.suppress(psycopg.OperationalError):
            pgconn.consume_input()
    if pgconn.status != ConnStatus.OK or conn.closed:
        raise psycopg.OperationalError("errands: pooled connection closed by the server")

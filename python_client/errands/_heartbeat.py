"""Worker registry and crashed-worker rescue: the SQL calls of a worker's liveness.

A continuous worker registers itself (``errands.register_worker``) and holds its
session-level advisory lock (taken by ``errands.try_lock_worker``) on its LISTEN
connection, which lives as long as the worker: PostgreSQL releases
the lock the moment that session ends, so ``errands.rescue_workers`` (which every
live worker calls every :data:`RESCUE_INTERVAL` seconds) sees at once that a
killed worker is gone and makes its jobs runnable again.  ``heartbeat`` every
``heartbeat_interval`` seconds catches a worker that hangs with its connection
open (after ``heartbeat_timeout``).  A clean stop calls ``unregister_worker``.

A worker without a LISTEN connection (``listen=False``, for PgBouncer in
transaction pooling mode) holds no session lock: it registers
with ``session_lock => false`` (:func:`register_sessionless`) and is declared
dead only by heartbeat timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Final

import psycopg
from psycopg import sql

from errands import _queries as q
from errands._connections import ConnectionSource
from errands._constants import LOCKLESS_HEARTBEAT_INTERVAL
from errands._retry import Outage, is_connection_error, retry_transient
from errands.logs import error_message

logger = logging.getLogger("errands.worker")

RESCUE_INTERVAL: Final = 2.0
"""Seconds between two ``rescue_workers`` calls of one worker."""

Emit = Callable[..., None]


async def register(conn: psycopg.AsyncConnection[Any], worker_id: str) -> bool:
    """Take the worker's advisory lock on ``conn`` (its LISTEN connection) and
    register it.  Returns False (and logs) when either fails: the worker then runs
    unregistered, and only ``reset_locked`` can rescue its jobs."""
    try:
        cur = await conn.execute(q.TRY_LOCK, {"worker_id": worker_id})
        row = await cur.fetchone()
        if not (row and row[0]):
            logger.warning(
                "errands: worker lock of %s is held by another session; not registering",
                worker_id,
            )
            return False
        await conn.execute(
            q.REGISTER, {"worker_id": worker_id, "host": socket.gethostname(), "pid": os.getpid()}
        )
    except psycopg.Error as exc:
        if is_connection_error(exc):
            raise  # the caller reconnects
        logger.warning("errands: could not register worker %s: %s", worker_id, error_message(exc))
        return False
    return True


async def register_sessionless(source: ConnectionSource, worker_id: str) -> bool:
    """Register without an advisory lock (``session_lock => false``): the worker is
    rescued only by heartbeat timeout.  Returns False (and logs) on failure."""
    try:
        async with source.connection() as conn:
            await conn.execute(q.REGISTER_SESSIONLESS, _identity(worker_id))
    except psycopg.Error as exc:
        logger.warning("errands: could not register worker %s: %s", worker_id, error_message(exc))
        return False
    return True


def _identity(worker_id: str) -> dict[str, Any]:
    return {"worker_id": worker_id, "host": socket.gethostname(), "pid": os.getpid()}


async def unregister(source: ConnectionSource, worker_id: str) -> None:
    try:
        async with source.connection() as conn:
            await conn.execute(q.UNREGISTER, {"worker_id": worker_id})
    except Exception as exc:
        logger.warning("errands: could not unregister worker %s: %s", worker_id, error_message(exc))


async def heartbeat_loop(
    source: ConnectionSource,
    worker_id: str,
    *,
    heartbeat_interval: float,
    heartbeat_timeout: float,
    emit: Emit,
    on_rescued: Callable[[int], None],
    outage: Outage | None = None,
    lock_held: Callable[[], bool] = lambda: True,
    wake: asyncio.Event | None = None,
    session_lock: bool = True,
) -> None:
    """Heartbeat every ``heartbeat_interval`` s and rescue dead workers every
    :data:`RESCUE_INTERVAL` s, until cancelled.

    While ``lock_held()`` is false (the LISTEN connection that holds the advisory
    lock is reconnecting) it heartbeats every :data:`LOCKLESS_HEARTBEAT_INTERVAL` s
    instead, and does not rescue (it cannot tell itself from a dead worker);
    ``wake`` (set when the lock is lost) makes it beat at once.  Connection
    failures go to ``outage`` (one warning per outage).  A worker declared dead
    registers again only while ``lock_held()`` (otherwise the reconnect registers
    it): a row without the lock would be declared dead again by the next rescue,
    releasing the jobs fetched in between while they run.  ``session_lock``: how
    the worker registered (a declared-dead worker registers again the same way;
    a worker without a session lock passes a ``lock_held`` that is always true)."""
    outage = outage if outage is not None else Outage(worker_id)
    wake = wake if wake is not None else asyncio.Event()
    next_beat = time.monotonic() + heartbeat_interval
    next_rescue = time.monotonic()
    while True:
        now = time.monotonic()
        held = lock_held()
        if wake.is_set():
            wake.clear()
            next_beat = now
        if now >= next_beat:
            next_beat = now + (heartbeat_interval if held else LOCKLESS_HEARTBEAT_INTERVAL)
            try:
                await retry_transient(
                    lambda: _beat(source, worker_id, lock_held, session_lock), "heartbeat"
                )
                outage.recovered("heartbeat")
            except Exception as exc:
                emit("worker:heartbeat:error", error=exc)
                outage.failed("heartbeat", exc)
                if is_connection_error(exc):
                    next_beat = now + LOCKLESS_HEARTBEAT_INTERVAL
        if now >= next_rescue and held:
            next_rescue = now + RESCUE_INTERVAL
            try:
                row = await retry_transient(
                    lambda: _fetchone(source, q.RESCUE_WORKERS, {"timeout": heartbeat_timeout}),
                    "rescue_workers",
                )
                outage.recovered("rescue")
                count = int(row[0]) if row else 0
                if count:
                    emit("worker:rescue", data={"count": count})
                    on_rescued(count)
            except Exception as exc:
                emit("worker:rescue:error", error=exc)
                outage.failed("rescue", exc, "rescue_workers")
        wake_at = min(next_beat, next_rescue) if held else next_beat
        delay = max(0.0, wake_at - time.monotonic())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), delay)


async def _beat(
    source: ConnectionSource, worker_id: str, lock_held: Callable[[], bool], session_lock: bool
) -> None:
    async with source.connection() as conn:
        cur = await conn.execute(q.HEARTBEAT, {"worker_id": worker_id})
        row = await cur.fetchone()
        if not (row and row[0]) and lock_held():
            # Declared dead (e.g. a long stall): its jobs were rescued; register
            # again to be seen as alive.
            logger.warning("errands: worker %s was declared dead", worker_id)
            await conn.execute(
                q.REGISTER if session_lock else q.REGISTER_SESSIONLESS, _identity(worker_id)
            )


async def _fetchone(source: ConnectionSource, query: sql.SQL, params: dict[str, Any]) -> Any:
    async with source.connection() as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchone()

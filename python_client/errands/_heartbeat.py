"""Worker registry and crashed-worker rescue (migration 0007_workers.sql).

A continuous worker registers itself (``errands.register_worker``) and holds the
session-level advisory lock ``pg_advisory_lock(hashtextextended(worker_id, 0))``
on its LISTEN connection, which lives as long as the worker: PostgreSQL releases
the lock the moment that session ends, so ``errands.rescue_workers`` (which every
live worker calls every :data:`RESCUE_INTERVAL` seconds) sees at once that a
killed worker is gone and makes its jobs runnable again.  ``heartbeat`` every
``heartbeat_interval`` seconds catches a worker that hangs with its connection
open (after ``heartbeat_timeout``).  A clean stop calls ``unregister_worker``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Final

import psycopg

from errands._connections import ConnectionSource
from errands.logs import error_message

logger = logging.getLogger("errands.worker")

RESCUE_INTERVAL: Final = 2.0
"""Seconds between two ``rescue_workers`` calls of one worker."""

TRY_LOCK: Final = "SELECT pg_try_advisory_lock(hashtextextended(%(worker_id)s, 0))"
REGISTER: Final = "SELECT errands.register_worker(%(worker_id)s, %(host)s, %(pid)s)"
HEARTBEAT: Final = "SELECT errands.heartbeat(%(worker_id)s)"
RESCUE: Final = "SELECT errands.rescue_workers(%(timeout)s * interval '1 second')"
UNREGISTER: Final = "SELECT errands.unregister_worker(%(worker_id)s)"

Emit = Callable[..., None]


async def register(conn: psycopg.AsyncConnection[Any], worker_id: str) -> bool:
    """Take the worker's advisory lock on ``conn`` (its LISTEN connection) and
    register it.  Returns False (and logs) when either fails: the worker then runs
    unregistered, and only ``reset_locked`` can rescue its jobs."""
    try:
        cur = await conn.execute(TRY_LOCK, {"worker_id": worker_id})
        row = await cur.fetchone()
        if not (row and row[0]):
            logger.warning(
                "errands: worker lock of %s is held by another session; not registering",
                worker_id,
            )
            return False
        await conn.execute(
            REGISTER, {"worker_id": worker_id, "host": socket.gethostname(), "pid": os.getpid()}
        )
    except psycopg.Error as exc:
        logger.warning("errands: could not register worker %s: %s", worker_id, error_message(exc))
        return False
    return True


async def unregister(source: ConnectionSource, worker_id: str) -> None:
    try:
        async with source.connection() as conn:
            await conn.execute(UNREGISTER, {"worker_id": worker_id})
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
    lock_held: Callable[[], bool] = lambda: True,
) -> None:
    """Heartbeat every ``heartbeat_interval`` s and rescue dead workers every
    :data:`RESCUE_INTERVAL` s, until cancelled.  A worker declared dead registers
    again only while ``lock_held()`` (its LISTEN connection, which holds the
    advisory lock, is up; otherwise the reconnect registers it): a row without
    the lock would be declared dead again by the next rescue, releasing the jobs
    fetched in between while they run."""
    next_beat = time.monotonic() + heartbeat_interval
    next_rescue = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_beat:
            next_beat = now + heartbeat_interval
            try:
                async with source.connection() as conn:
                    cur = await conn.execute(HEARTBEAT, {"worker_id": worker_id})
                    row = await cur.fetchone()
                    if not (row and row[0]) and lock_held():
                        # Declared dead (e.g. a long stall): its jobs were
                        # rescued; register again to be seen as alive.
                        logger.warning("errands: worker %s was declared dead", worker_id)
                        await conn.execute(
                            REGISTER,
                            {
                                "worker_id": worker_id,
                                "host": socket.gethostname(),
                                "pid": os.getpid(),
                            },
                        )
            except Exception as exc:
                emit("worker:heartbeat:error", error=exc)
                logger.warning("errands: heartbeat failed: %s", error_message(exc))
        if now >= next_rescue:
            next_rescue = now + RESCUE_INTERVAL
            try:
                async with source.connection() as conn:
                    cur = await conn.execute(RESCUE, {"timeout": heartbeat_timeout})
                    row = await cur.fetchone()
                count = int(row[0]) if row else 0
                if count:
                    emit("worker:rescue", data={"count": count})
                    on_rescued(count)
            except Exception as exc:
                emit("worker:rescue:error", error=exc)
                logger.warning("errands: rescue_workers failed: %s", error_message(exc))
        await asyncio.sleep(max(0.0, min(next_beat, next_rescue) - time.monotonic()))

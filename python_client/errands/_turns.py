"""Idle workers take turns at answering job notifications (no thundering herd).

Every ``add_job`` of a job that is due notifies every listening session.  If every
idle worker answered with a ``get_jobs`` call, N idle workers would run N fetches
per job, all but one finding nothing.  Instead the continuous workers that run the
same task set share one *turn*: a session-level advisory lock (two-int key: a
constant and a hash of the sorted task identifiers) on a connection of each
worker's own (its LISTEN connection keeps listening for cancellation requests and
holds the worker's lock; a backend blocked waiting for the turn could do neither).

* The worker holding the turn listens and fetches on every notification.
* A worker with room (a free slot) that does not hold the turn waits for it in
  ``pg_advisory_lock``; PostgreSQL grants it to one waiter at a time.  It does not
  listen while it waits: a session busy in a statement cannot take its
  notifications, and would hold back PostgreSQL's notification queue.
* The holder keeps the turn while it has room.  A notification that finds every
  slot busy passes the turn on (``UNLISTEN``, unlock); the next waiter, once
  granted, listens and fetches once at once (the catch-up for jobs notified while
  nobody listened).  The busy worker waits for the turn again once a slot frees.

* The holder also fetches when a rate window reopens (:mod:`errands._rate_wake`;
  so does a worker whose last fetch took jobs), so a reopening costs a fetch or
  two, not one per idle worker.

So while any worker of the set has a free slot, one of them listens and fetches
every job notified, at once: one fetch per job, whatever the number of idle
workers.  Every worker's other fetches (polls, a freed named queue, a fetch that
came back full, rescues, reconnects) are unchanged.  A worker that dies releases
the turn with its session; a worker that stops gives it back before it waits for
its running jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from errands import _queries as q
from errands._retry import Backoff

_CLASS = zlib.crc32(b"errands:turn") & 0x7FFFFFFF


def turn_key(identifiers: Sequence[str]) -> tuple[int, int]:
    """The advisory lock key of the workers running exactly these tasks."""
    tasks = "\0".join(sorted(set(identifiers))).encode()
    return _CLASS, zlib.crc32(tasks) & 0x7FFFFFFF


class Turns:
    """Takes turns on a worker's LISTEN connection (see the module doc).

    ``has_room`` says whether a job fetched now would start at once; ``room`` is set
    whenever that may have become true; ``on_notify`` (a notification) and
    ``on_turn`` (the turn was taken: catch up) ask for a fetch."""

    def __init__(
        self,
        identifiers: Sequence[str],
        *,
        has_room: Callable[[], bool],
        room: asyncio.Event,
        on_notify: Callable[[], None],
        on_turn: Callable[[], None],
    ) -> None:
        a, b = turn_key(identifiers)
        self._has_room = has_room
        self._room = room
        self._on_notify = on_notify
        self._on_turn = on_turn
        self.holding = False
        """Whether this worker holds the turn (it also answers rate windows that
        reopen, :mod:`errands._rate_wake`, not every idle worker).  True
        for good on a server without turns (every worker answers for itself)."""
        names = {"a": sql.Literal(a), "b": sql.Literal(b), "channel": sql.Identifier(q.CHANNEL)}
        # The LISTEN runs once the lock is granted, in the same round trip.
        self._take = q.TAKE_TURN.format(**names)
        self._give = q.GIVE_TURN.format(**names)

    async def serve(
        self,
        connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]],
        on_error: Callable[[Exception], None],
    ) -> None:
        """Take turns on a connection of its own, reconnecting with backoff, until
        cancelled.  Closing the connection gives the turn back.  Returns at once on a
        server before PostgreSQL 14 (the LISTEN connection answers notifications)."""
        backoff = Backoff()
        while True:
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conn = await connect()
                if conn.info.server_version < q.TURNS_MIN_SERVER_VERSION:
                    self.holding = True  # no turns: every worker answers for itself
                    return
                backoff.reset()
                await self.run(conn)
            except Exception as exc:
                on_error(exc)
            finally:
                if conn is not None:
                    await conn.close()
            await asyncio.sleep(backoff.next_delay())

    async def run(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Take turns on ``conn`` (connected, not listening) until it fails."""
        try:
            while True:
                await self._wait_for_room()
                await conn.execute(self._take)  # blocks until it is our turn
                self.holding = True
                self._on_turn()  # catch up
                async with contextlib.aclosing(conn.notifies()) as notifies:
                    async for _ in notifies:
                        if not self._has_room():
                            break  # pass the turn on: an idle worker takes this job
                        self._on_notify()
                self.holding = False
                await conn.execute(self._give)
        finally:
            self.holding = False

    async def _wait_for_room(self) -> None:
        while not self._has_room():
            self._room.clear()
            if self._has_room():
                return
            await self._room.wait()

"""A continuous worker's presence: its LISTEN connection (which holds its advisory
lock), its registration and its heartbeat/rescue loop (:mod:`errands._heartbeat`).

With ``listen`` one dedicated connection listens on ``errands:jobs`` (and on
``errands:cancel``, the cancellation requests of running jobs) and holds the
worker's session advisory lock; it is reconnected (with backoff) when it drops,
and while it is away the worker is "without its lock": other workers may declare
it dead at any moment, so it must neither fetch nor start jobs.  Without
``listen`` (PgBouncer in transaction pooling mode) there is no session at all:
the worker registers without a lock and only its heartbeat keeps it alive.
With ``turns`` (:mod:`errands._turns`; PostgreSQL >= 14) it listens on
``errands:cancel`` only: the connection of the worker's turn answers job
notifications.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import psycopg

from errands import _heartbeat
from errands import _queries as q
from errands._connections import ConnectionSource
from errands._retry import Backoff, Outage

Emit = Callable[..., None]

LISTEN_KEEPALIVES: Mapping[str, Any] = {
    "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
}  # fmt: skip
"""libpq TCP keepalive settings of the LISTEN connection (the caller's win)."""


class Presence:
    """Registers the worker and keeps it visibly alive until :meth:`close`.

    ``on_notify`` is called for every notification, every reconnect and every
    rescue of other workers' jobs (there may be jobs to fetch); ``on_cancel`` for
    every ``errands:cancel`` notification (its payload); ``on_reconnect`` is awaited
    after the LISTEN connection came back (before ``on_notify``); with ``turns``
    the connection does not listen on ``errands:jobs`` (the turn's own connection
    does, :mod:`errands._turns`)."""

    def __init__(
        self,
        source: ConnectionSource,
        worker_id: str,
        *,
        conninfo: str,
        connect_kwargs: Mapping[str, Any],
        listen: bool,
        heartbeat_interval: float,
        heartbeat_timeout: float,
        emit: Emit,
        outage: Outage,
        on_notify: Callable[[], None],
        on_reconnect: Callable[[], Awaitable[None]],
        on_cancel: Callable[[str], None] = lambda _payload: None,
        turns: bool = False,
    ) -> None:
        self._source = source
        self._worker_id = worker_id
        self._conninfo = conninfo
        self._connect_kwargs = connect_kwargs
        self._listen = listen
        self._heartbeat_interval = heartbeat_interval
        self._heartbeat_timeout = heartbeat_timeout
        self._emit = emit
        self._outage = outage
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._on_cancel = on_cancel
        self._turns = turns
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self._registered = False
        self._lock_held = False  # the advisory lock, on the live LISTEN connection
        self._lock_lost = asyncio.Event()  # wakes the heartbeat loop
        self._started = False
        self._listen_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None

    async def register(self) -> None:
        """Connect the LISTEN connection and register (or register without a lock)."""
        if self._listen:
            self.conn = await self._connect()
        else:
            self._registered = await _heartbeat.register_sessionless(self._source, self._worker_id)

    def start(self) -> None:
        """Start listening (on the connection :meth:`register` opened) and beating."""
        if self._listen:
            self._listen_task = asyncio.create_task(self._listen_loop(), name="errands-listen")
        self._heartbeat_task = asyncio.create_task(
            _heartbeat.heartbeat_loop(
                self._source, self._worker_id,
                heartbeat_interval=self._heartbeat_interval,
                heartbeat_timeout=self._heartbeat_timeout,
                emit=self._emit, on_rescued=lambda _count: self._on_notify(),
                outage=self._outage,
                lock_held=(lambda: self._lock_held) if self._listen else (lambda: True),
                wake=self._lock_lost, session_lock=self._listen,
            ),
            name="errands-heartbeat",
        )  # fmt: skip
        self._started = True

    def may_work(self) -> bool:
        """False while the worker runs without its LISTEN connection, which holds
        its advisory lock: other workers may then declare it dead at any moment and
        release its jobs and queues, so it must neither fetch nor start jobs (they
        would run twice, and a named queue could run two jobs at once)."""
        return self.conn is not None or not (self._listen and self._started)

    async def stop_listening(self) -> None:
        """Stop reconnecting and reading notifications; the connection (and with it
        the lock) and the heartbeat stay until :meth:`close`, so that other workers
        do not rescue the jobs still finishing."""
        if self._listen_task is not None:
            self._listen_task.cancel()
            await asyncio.gather(self._listen_task, return_exceptions=True)
            self._listen_task = None

    async def close(self) -> None:
        """Stop beating, unregister and close the LISTEN connection."""
        await self.stop_listening()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
        if self._registered:
            await _heartbeat.unregister(self._source, self._worker_id)
        if self.conn is not None:
            await self.conn.close()

    def notified(self) -> None:
        """A notification arrived (there may be jobs to fetch)."""
        self._on_notify()
        self._emit("pool:listen:notification")

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        self._emit("pool:listen:connecting")
        # TCP keepalives (unless the caller set them) so that a silently dropped
        # network ends the LISTEN connection in ~25 s instead of hours.
        kwargs = {**LISTEN_KEEPALIVES, **self._connect_kwargs}
        conn = await psycopg.AsyncConnection.connect(self._conninfo, **kwargs)
        try:
            turns = self._turns and conn.info.server_version >= q.TURNS_MIN_SERVER_VERSION
            await conn.execute(q.LISTEN_CANCEL if turns else q.LISTEN)
            # The advisory lock lives with this connection: take it again on every
            # reconnect, at once, so that rescue_workers sees this worker alive.
            held = await _heartbeat.register(conn, self._worker_id)
        except BaseException:
            await conn.close()
            raise
        if held:
            self._registered = True
        self._lock_held = held
        self._emit("pool:listen:success")
        return conn

    async def _listen_loop(self) -> None:
        backoff = Backoff()
        while True:
            try:
                if self.conn is None:
                    self.conn = await self._connect()
                    backoff.reset()
                    self._outage.recovered("listen")
                    await self._on_reconnect()
                    self._on_notify()  # catch up: notifications may have been missed
                async for notify in self.conn.notifies():
                    if notify.channel == q.CANCEL_CHANNEL:
                        self._on_cancel(notify.payload)
                        continue
                    self._on_notify()
                    self._emit("pool:listen:notification")
                raise psycopg.OperationalError("the LISTEN connection stopped")
            except Exception as exc:
                # The advisory lock went with the connection: heartbeat at once (and
                # often, until it is back) so that rescue_workers leaves our jobs alone.
                self._lock_held = False
                self._lock_lost.set()
                self._emit("pool:listen:error", error=exc)
                self._outage.failed("listen", exc, "LISTEN connection")
                if self.conn is not None:
                    conn, self.conn = self.conn, None
                    await conn.close()
                await asyncio.sleep(backoff.next_delay())

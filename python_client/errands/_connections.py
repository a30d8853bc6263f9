"""Where the worker gets database connections from.

* :class:`ConnectionSource` -- async connections for fetching, reporting and
  ``helpers.connection()``: a pool (:class:`PoolSource`) or one shared connection
  (:class:`SingleConnectionSource`, used by ``testing.run_task_list_once``);
* :class:`SyncConnections` -- a lazily opened blocking pool for sync tasks
  (``helpers.sync_connection()``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from psycopg.conninfo import make_conninfo

from errands import _queries as q

if TYPE_CHECKING:  # psycopg_pool is imported where a pool is made (not by `import errands`)
    from psycopg_pool import AsyncConnectionPool, ConnectionPool


class ConnectionSource(Protocol):
    """Hands out async connections; each use commits at exit (or is autocommit)."""

    def connection(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]: ...


class PoolSource:
    """Connections from an :class:`AsyncConnectionPool`."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    def connection(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return self.pool.connection()


class SingleConnectionSource:
    """One connection shared in turn; every use runs in ``conn.transaction()``."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._lock, self.conn.transaction():
            yield self.conn


PREPARE_ENV = "ERRANDS_PREPARE"
"""Environment variable: ``0`` (or ``false``/``no``/``off``) turns off server-side
prepared statements in every connection errands opens (see :func:`prepare_enabled`)."""


def prepare_enabled(prepare: bool | None = None) -> bool:
    """Whether errands may use server-side prepared statements.

    ``prepare`` when given, else ``$ERRANDS_PREPARE`` (default on).  psycopg prepares
    a statement on the server after it ran ``prepare_threshold`` (5) times on a
    connection; behind PgBouncer in transaction pooling mode (before PgBouncer 1.21,
    or with ``max_prepared_statements = 0``) the next transaction may run on another
    server connection, where the statement does not exist (or has another one's name).
    """
    if prepare is not None:
        return prepare
    value = os.environ.get(PREPARE_ENV, "").strip().lower()
    if value in ("", "1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"errands: {PREPARE_ENV} must be 0 or 1, got {value!r}")


def connect_kwargs(prepare: bool | None = None) -> dict[str, Any]:
    """Keyword arguments of the connections errands opens: autocommit, and
    ``prepare_threshold=None`` (never prepare) when prepared statements are off."""
    kwargs: dict[str, Any] = {"autocommit": True}
    if not prepare_enabled(prepare):
        kwargs["prepare_threshold"] = None
    return kwargs


def execute_prepare(prepare: bool | None = None) -> bool | None:
    """The ``prepare`` argument of ``cursor.execute`` on a caller's connection:
    ``False`` (never) when prepared statements are off, else ``None`` (psycopg
    decides, following the connection's ``prepare_threshold``)."""
    return None if prepare_enabled(prepare) else False


UTC_ALIASES: frozenset[str] = frozenset(
    ["Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu"]
)
"""Time zone names that are links to UTC in the tz database (same rules, same
abbreviation)."""


async def utc_by_its_name(conn: psycopg.AsyncConnection[Any]) -> None:
    """Pool ``configure`` of the worker's own pool: a session whose ``TimeZone`` is
    another name of UTC (``Etc/UTC``, the zone ``initdb`` takes from most Linux
    images) is set to ``UTC``.

    psycopg returns every ``timestamptz`` it reads in the session's zone: for
    ``UTC`` it builds ``datetime.timezone.utc`` values directly, for any other
    name it converts through :mod:`zoneinfo`.  A fetched job has four timestamps:
    turning 500 ``get_jobs`` rows into jobs took 7.5 us per row in ``Etc/UTC`` and
    2.3 us in ``UTC``.  Nothing else changes: same instants, offsets and
    abbreviation; tasks see ``SHOW TimeZone`` = ``UTC`` on ``helpers.connection()``
    and ``tzinfo=datetime.timezone.utc`` instead of ``ZoneInfo('Etc/UTC')``.  Other
    zones are left alone."""
    if conn.info.parameter_status("TimeZone") in UTC_ALIASES:
        await conn.execute(q.SET_TIMEZONE_UTC)


def utc_by_its_name_sync(conn: psycopg.Connection[Any]) -> None:
    """:func:`utc_by_its_name` for the blocking pool of sync tasks, so that
    ``helpers.sync_connection()`` sees the same zone as ``helpers.connection()``."""
    if conn.info.parameter_status("TimeZone") in UTC_ALIASES:
        conn.execute(q.SET_TIMEZONE_UTC)


def connection_params(
    conninfo: str, kwargs: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """``(conninfo, kwargs)`` for opening more connections like the given ones (autocommit)."""
    return conninfo, {**(kwargs or {}), "autocommit": True}


def params_of_pool(pool: AsyncConnectionPool[Any]) -> tuple[str, dict[str, Any]]:
    if not isinstance(pool.conninfo, str):
        raise TypeError(
            "errands: the worker opens its LISTEN connection with the pool's conninfo, "
            "which must be a string"
        )
    if pool.kwargs is not None and not isinstance(pool.kwargs, Mapping):
        raise TypeError("errands: the pool's kwargs must be a mapping")
    return connection_params(pool.conninfo, pool.kwargs)


def params_of_connection(conn: psycopg.AsyncConnection[Any] | psycopg.Connection[Any]) -> str:
    """A conninfo string reaching the same database as ``conn`` (password included)."""
    password = conn.info.password
    return make_conninfo(conn.info.dsn, **({"password": password} if password else {}))


class SyncConnections:
    """A blocking :class:`ConnectionPool`, opened on first use (by a sync task's thread)."""

    def __init__(self, conninfo: str, kwargs: Mapping[str, Any], max_size: int) -> None:
        self._conninfo = conninfo
        self._kwargs = dict(kwargs)
        self._max_size = max_size
        self._pool: ConnectionPool[Any] | None = None
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            if self._closed:
                raise RuntimeError("errands: the worker has stopped; no more connections")
            if self._pool is None:
                from psycopg_pool import ConnectionPool

                self._pool = ConnectionPool(
                    self._conninfo,
                    kwargs=self._kwargs,
                    min_size=0,
                    max_size=self._max_size,
                    open=True,
                    name="errands-sync",
                    configure=utc_by_its_name_sync,
                )
            pool = self._pool
        with pool.connection() as conn:
            yield conn

    def close(self) -> None:
        """Close the pool (blocking; call it in a thread from async code)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=5.0)

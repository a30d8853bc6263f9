"""The dashboard's connections: a small pool opened on first use (a mounted app
gets no lifespan events of its own), rows as dicts, autocommit (each action is
one statement)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool

Params = Sequence[Any] | Mapping[str, Any] | None
Query = str | sql.Composable


class Database:
    def __init__(self, conninfo: str, max_size: int) -> None:
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True, "row_factory": dict_row,
                    "application_name": "errands dashboard"},
        )
        self._opened = False
        self._lock = asyncio.Lock()

    async def _ensure_open(self) -> None:
        if self._opened:
            return
        async with self._lock:
            if not self._opened:
                await self._pool.open(wait=True)
                self._opened = True

    async def rows(self, query: Query, params: Params = None) -> list[dict[str, Any]]:
        await self._ensure_open()
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)  # type: ignore[arg-type]
            return await cur.fetchall() if cur.description else []  # type: ignore[return-value]

    async def row(self, query: Query, params: Params = None) -> dict[str, Any] | None:
        found = await self.rows(query, params)
        return found[0] if found else None

    async def metrics(self) -> bytes:
        """The body of GET /metrics: errands.metrics_db's gauges, read on one of the
        pool's connections with tuple rows (what that module unpacks)."""
        from errands.metrics_db import render_database_metrics_async

        await self._ensure_open()
        async with self._pool.connection() as conn:
            conn.row_factory = tuple_row
            try:
                return await render_database_metrics_async(conn)
            finally:
                conn.row_factory = dict_row  # type: ignore[assignment]

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()
            self._opened = False

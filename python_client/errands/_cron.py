"""Recurring jobs: the worker's cron loop.

At start the worker stores its crontab with ``errands.set_crontab`` (so workers with
the same file converge), then calls ``errands.cron_tick()`` at the top of every
minute.  The database decides what is due and deduplicates: any number of workers
(or pg_cron) may tick at the same time, each (item, minute) gets exactly one job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Final

from psycopg_pool import AsyncConnectionPool

from errands import _queries as q
from errands._options import CrontabSource

log = logging.getLogger("errands.cron")

#: Seconds after the top of the minute at which the worker ticks.
TICK_DELAY: Final = 0.05


def crontab_text(crontab: CrontabSource) -> str:
    """The text of a crontab given as text or as a path (a ``str`` naming an
    existing file is read; any other ``str`` is the crontab itself)."""
    if isinstance(crontab, os.PathLike):
        return Path(crontab).read_text(encoding="utf-8")
    if "\n" not in crontab and crontab.strip() and Path(crontab).is_file():
        return Path(crontab).read_text(encoding="utf-8")
    return crontab


def seconds_to_next_minute(now: float | None = None) -> float:
    """Seconds from ``now`` (epoch seconds) to just after the next minute boundary."""
    now = time.time() if now is None else now
    return 60.0 - (now % 60.0) + TICK_DELAY


class CronScheduler:
    """Stores the crontab, then ticks every minute until :meth:`stop`."""

    def __init__(
        self, pool: AsyncConnectionPool[Any], crontab: CrontabSource, source: str = "default"
    ) -> None:
        self.pool = pool
        self.text = crontab_text(crontab)
        self.source = source
        self._task: asyncio.Task[None] | None = None

    async def set_crontab(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(q.SET_CRONTAB, {"crontab": self.text, "source": self.source})
            row = await cur.fetchone()
        count = int(row[0]) if row else 0
        log.info("cron: %d crontab item%s", count, "" if count == 1 else "s")
        return count

    async def tick(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(q.CRON_TICK)
            row = await cur.fetchone()
        count = int(row[0]) if row else 0
        if count:
            log.info("cron: enqueued %d job%s", count, "" if count == 1 else "s")
        return count

    async def start(self) -> None:
        """Tick now, then at the top of every minute (call :meth:`set_crontab` first)."""
        await self._safe_tick()
        self._task = asyncio.create_task(self._loop(), name="errands-cron")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _safe_tick(self) -> None:
        try:
            await self.tick()
        except asyncio.CancelledError:
            raise
        except Exception:  # the database may be briefly away: try again next minute
            log.exception("cron: tick failed")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(seconds_to_next_minute())
            await self._safe_tick()

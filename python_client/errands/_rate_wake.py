"""When a rate limit lets held-back work start (flow control).

A concurrency slot that frees and a resume are announced (``NOTIFY``); a rate
window that reopens is not: it reopens because time passed.  So when a fetch comes
back short, the producer asks ``errands.next_start_at`` when the earliest
exhausted window that holds back work for its tasks reopens, and fetches at that
moment rather than at its next poll (whichever comes first).

Free without rate limits: the function then answers NULL ("no rate limit is
set") and the worker does not ask again for one poll interval, so a worker asks
at most once per poll interval, and only after a short fetch.  A limit set
meanwhile is noticed within that interval.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from errands import _queries as q
from errands._connections import ConnectionSource

MARGIN = 0.002
"""Seconds added to the reopening moment: the window reopens strictly after it."""


class RateWake:
    """Asks the database how long until held-back work may start."""

    def __init__(self, source: ConnectionSource, identifiers: Sequence[str], quiet: float) -> None:
        self._source = source
        self._params: dict[str, Any] = {"tasks": list(identifiers)}
        self._quiet = quiet  # seconds not to ask again after "no rate limit is set"
        self._ask_after = 0.0

    async def delay(self) -> float | None:
        """Seconds until an exhausted rate window of the worker's tasks (or of a
        named queue with waiting jobs) reopens; 0: now (a rate-limited queue has
        room and jobs due); infinity: rate limits exist but none holds work back;
        None: no rate limit is set (not asked again for a poll interval)."""
        now = time.monotonic()
        if now < self._ask_after:
            return None
        async with self._source.connection() as conn:
            cur = await conn.execute(q.NEXT_START_IN, self._params)
            row = await cur.fetchone()
        seconds = row[0] if row is not None else None
        if seconds is None:
            self._ask_after = now + self._quiet
            return None
        if math.isinf(seconds):
            return math.inf  # rate limits exist, none holds work back now
        if seconds <= 0:
            return 0.0  # room now (a rate-limited queue has room and jobs due)
        return float(seconds) + MARGIN

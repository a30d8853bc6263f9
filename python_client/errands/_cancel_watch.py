"""Hearing cancellation requests for the jobs this worker runs.

``errands.cancel_jobs`` (and ``add_job(..., job_key_mode => 'abort_replace')``)
NOTIFY ``errands:cancel`` with ``{"job_id": ..., "worker_id": ...}``; the worker's
LISTEN connection (:mod:`errands._presence`) hands each payload to
:meth:`CancelWatch.notified`.  Notifications are lost while that connection is
down, so a slow poll of ``errands.worker_cancel_requests`` (and one after every
reconnect) catches the requests it missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from errands import _queries as q
from errands._connections import ConnectionSource

logger = logging.getLogger("errands.worker")

POLL_INTERVAL = 5.0
"""Seconds between two polls for missed cancellation requests (while jobs run)."""


class CancelWatch:
    """Routes the cancellation requests of this worker's jobs to ``cancel``
    (``Executor.cancel``); ``busy`` says whether any job runs (no poll otherwise)."""

    def __init__(
        self,
        source: ConnectionSource,
        worker_id: str,
        *,
        cancel: Callable[[int], bool],
        busy: Callable[[], bool],
        poll_interval: float | None = None,
    ) -> None:
        self._source = source
        self._worker_id = worker_id
        self._cancel = cancel
        self._busy = busy
        self._poll_interval = POLL_INTERVAL if poll_interval is None else poll_interval

    def notified(self, payload: str) -> None:
        """An ``errands:cancel`` payload; requests for other workers' jobs are ignored."""
        try:
            data = json.loads(payload)
            job_id, worker_id = int(data["job_id"]), data.get("worker_id")
        except (ValueError, TypeError, KeyError):
            logger.warning("errands: ignoring a malformed errands:cancel payload %r", payload)
            return
        if worker_id == self._worker_id:
            self._cancel(job_id)

    async def poll(self) -> None:
        """Ask the database which of this worker's jobs have a cancellation request."""
        async with self._source.connection() as conn:
            cur = await conn.execute(q.WORKER_CANCEL_REQUESTS, {"worker_id": self._worker_id})
            for (job_id,) in await cur.fetchall():
                self._cancel(job_id)

    async def poll_loop(self) -> None:
        """Poll every ``poll_interval`` seconds while jobs run (errors: next time)."""
        while True:
            await asyncio.sleep(self._poll_interval)
            if not self._busy():
                continue
            try:
                await self.poll()
            except Exception as exc:
                logger.debug("errands: polling for cancellation requests failed: %s", exc)

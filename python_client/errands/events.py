"""A small hooks API: subscribe callbacks to named worker events.

Event names (after Graphile Worker's):

* ``worker:start`` / ``worker:stop`` -- a worker began / finished (``stop`` carries
  ``error`` when it crashed);
* ``worker:shutdown`` -- graceful shutdown began (``data["signal"]`` when a signal
  caused it); ``worker:shutdown:force`` -- running jobs are being aborted;
* ``worker:fetch:error``, ``worker:report:error``, ``worker:sweep``,
  ``worker:sweep:error``, ``worker:return`` (fetched jobs handed back at shutdown,
  ``data["job_ids"]``), ``worker:prune`` (expired finished jobs deleted,
  ``data["count"]`` > 0), ``worker:prune:error``;
* ``job:start``, ``job:success``, ``job:error`` (this try failed; ``error``),
  ``job:failed`` (after ``job:error`` when no attempt is left), ``job:complete``
  (the outcome is recorded in the database; ``error`` is ``None`` on success),
  ``job:lock_lost`` (the job's lock was taken away before the outcome was recorded),
  ``job:snooze`` (the task raised :class:`errands.Snooze` and the snooze is recorded;
  ``data["delay"]`` in seconds; followed by ``job:complete`` with ``error`` ``None``),
  ``job:cancel_requested`` (a cancellation request for a running job was heard),
  ``job:cancelled`` (the job ended cancelled: :class:`errands.Cancel`, or a request;
  ``data["reason"]``, ``None`` for a request; followed by ``job:complete``);
* ``pool:listen:connecting`` / ``:success`` / ``:error`` / ``:notification``.

Callbacks take one :class:`Event` and may be sync or async.  An exception in a
callback is logged and otherwise ignored.  Async callbacks run as tasks that the
worker waits for when it stops.  Subscribe to ``"*"`` to get every event.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from errands.job import Job

logger = logging.getLogger("errands.events")

WILDCARD = "*"


@dataclass(frozen=True)
class Event:
    """What happened: ``name`` plus whichever of the other fields apply."""

    name: str
    worker_id: str
    job: Job | None = None
    error: BaseException | None = None
    duration: float | None = None
    """Seconds the task ran (``job:success``, ``job:error``, ``job:complete``)."""
    data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def fast(
        cls,
        name: str,
        worker_id: str,
        job: Job | None,
        error: BaseException | None,
        duration: float | None,
        data: Mapping[str, Any],
    ) -> Event:
        """The same event as ``Event(...)`` with every field given, built without the
        frozen dataclass's per-field ``object.__setattr__`` (the worker emits one or
        more per job: 2.1 -> 1.1 us)."""
        event: Event = object.__new__(cls)
        event.__dict__.update(
            name=name, worker_id=worker_id, job=job, error=error, duration=duration, data=data
        )
        return event


Callback = Callable[[Event], "Awaitable[None] | None"]


class Events:
    """Named event callbacks; one instance may be shared by several workers."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = {}
        self._pending: set[asyncio.Task[None]] = set()

    @overload
    def on(self, name: str) -> Callable[[Callback], Callback]: ...
    @overload
    def on(self, name: str, callback: Callback) -> Callback: ...
    def on(
        self, name: str, callback: Callback | None = None
    ) -> Callback | Callable[[Callback], Callback]:
        """Subscribe ``callback`` to ``name`` (``"*"`` = all); usable as a decorator."""
        if callback is None:

            def decorator(fn: Callback) -> Callback:
                self._callbacks.setdefault(name, []).append(fn)
                return fn

            return decorator
        self._callbacks.setdefault(name, []).append(callback)
        return callback

    def off(self, name: str, callback: Callback) -> None:
        """Unsubscribe ``callback`` from ``name`` (no error when it was not subscribed)."""
        callbacks = self._callbacks.get(name, [])
        if callback in callbacks:
            callbacks.remove(callback)

    def wants(self, name: str) -> bool:
        """Whether emitting ``name`` would call anything (lets hot paths skip building events)."""
        return bool(self._callbacks.get(name)) or bool(self._callbacks.get(WILDCARD))

    def emit(self, event: Event) -> None:
        """Call every callback of ``event.name`` (and ``"*"``) now, in subscription order."""
        for callback in (*self._callbacks.get(event.name, ()), *self._callbacks.get(WILDCARD, ())):
            try:
                result = callback(event)
                if result is not None and inspect.isawaitable(result):
                    task = asyncio.ensure_future(self._guard(result, callback, event))
                    self._pending.add(task)
                    task.add_done_callback(self._pending.discard)
            except Exception:
                logger.exception("errands: %s callback %r failed", event.name, callback)

    @staticmethod
    async def _guard(result: Awaitable[None], callback: Callback, event: Event) -> None:
        try:
            await result
        except Exception:
            logger.exception("errands: %s callback %r failed", event.name, callback)

    async def drain(self) -> None:
        """Wait for the async callbacks started so far."""
        # Only the unfinished ones: a finished task leaves the set in a callback the
        # loop has yet to run, and a gather of finished tasks returns without
        # yielding to the loop (Python >= 3.12), so waiting for the set to empty
        # would spin forever.
        while pending := [task for task in self._pending if not task.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

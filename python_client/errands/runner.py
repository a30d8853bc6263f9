"""Entry points: :func:`run` (continuous), :func:`run_once`, :func:`run_sync`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sys
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from errands._connections import PoolSource, connect_kwargs, params_of_pool, utc_by_its_name
from errands._cron import CronScheduler
from errands._install import install_if_needed_async
from errands._options import WorkerOptions, WorkerOverrides, resolve
from errands._retry import connection_alive
from errands.events import Events
from errands.logs import attach_job_logging
from errands.tasks import TaskSource, load_tasks
from errands.worker import Worker

if TYPE_CHECKING:
    from typing_extensions import Unpack

HANDLED_SIGNALS = ("SIGINT", "SIGTERM")


class Runner:
    """A running worker.  ``await runner.stop()`` shuts it down gracefully;
    ``await runner.wait()`` waits until it has stopped (and re-raises a crash)."""

    def __init__(
        self,
        worker: Worker,
        owned_pool: AsyncConnectionPool[Any] | None,
        cron: CronScheduler | None = None,
    ) -> None:
        self.worker = worker
        self._owned_pool = owned_pool
        self.cron = cron
        self._signals: list[int] = []
        self._previous: dict[int, Any] = {}  # handlers replaced by signal.signal()
        self._finished: asyncio.Task[None] = asyncio.create_task(self._finish())

    @property
    def events(self) -> Events:
        return self.worker.events

    @property
    def worker_id(self) -> str:
        return self.worker.worker_id

    async def stop(self, *, force: bool = False) -> None:
        """Shut down (gracefully, or at once with ``force``) and wait until done."""
        if force:
            self.worker.force_stop()
        else:
            self.worker.request_stop()
        await self.wait()

    async def wait(self) -> None:
        """Wait until the worker has stopped and its pool is closed."""
        await asyncio.shield(self._finished)

    async def __aenter__(self) -> Runner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _finish(self) -> None:
        try:
            await self.worker.wait()
        finally:
            if self.cron is not None:
                await self.cron.stop()
            self._remove_signal_handlers()
            if self._owned_pool is not None:
                await self._owned_pool.close()

    # --- signals -----------------------------------------------------------------------

    def handle_signals(self) -> None:
        """SIGINT/SIGTERM: the first starts a graceful shutdown, the second forces it."""
        loop = asyncio.get_running_loop()
        for name in HANDLED_SIGNALS:
            signum = getattr(signal, name)
            try:
                loop.add_signal_handler(signum, self._on_signal, name)
                self._signals.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):  # Windows, or a thread
                with contextlib.suppress(ValueError):
                    handler = functools.partial(self._on_signal_threadsafe, loop, name)
                    self._previous[signum] = signal.signal(signum, handler)

    def _on_signal_threadsafe(
        self, loop: asyncio.AbstractEventLoop, name: str, _signum: int, _frame: object
    ) -> None:
        loop.call_soon_threadsafe(self._on_signal, name)

    def _on_signal(self, name: str) -> None:
        if self.worker.done:
            return
        if self.worker.stopping:
            self.worker.force_stop()
        else:
            self.worker.request_stop(signal=name)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in self._signals:
            loop.remove_signal_handler(signum)
        self._signals.clear()
        for signum, previous in self._previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, previous)
        self._previous.clear()


async def _pool_for(
    conninfo_or_pool: str | AsyncConnectionPool[Any],
    options: WorkerOptions,
    *,
    continuous: bool,
) -> tuple[AsyncConnectionPool[Any], bool]:
    if isinstance(conninfo_or_pool, AsyncConnectionPool):
        return conninfo_or_pool, False
    size = options.max_pool_size or options.concurrency + 2
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        conninfo_or_pool,
        # run-once: wait for one connection only; the pool grows on demand.
        min_size=min(2 if continuous else 1, size),
        max_size=size,
        kwargs=connect_kwargs(options.prepare),
        open=False,
        name="errands",
        # Discard connections the server closed (restart, pg_terminate_backend).
        check=connection_alive,
        configure=utc_by_its_name,
    )
    try:
        await pool.open(wait=True, timeout=15.0)
    except BaseException:
        await pool.close()
        raise
    return pool, True


async def _start(
    conninfo_or_pool: str | AsyncConnectionPool[Any],
    tasks: TaskSource,
    options: WorkerOptions,
    *,
    continuous: bool,
    events: Events | None,
) -> Runner:
    registry = load_tasks(tasks)
    events = events if events is not None else Events()
    if options.log_jobs:
        attach_job_logging(events, quiet=options.quiet)
    pool, owned = await _pool_for(conninfo_or_pool, options, continuous=continuous)
    try:
        if options.install:
            async with pool.connection() as conn:
                await install_if_needed_async(conn)
        crontab = options.crontab
        cron = CronScheduler(pool, crontab) if crontab is not None and continuous else None
        if cron is not None:
            await cron.set_crontab()  # a bad crontab fails the start
        conninfo, kwargs = params_of_pool(pool)
        worker = Worker(
            PoolSource(pool), registry, options, conninfo=conninfo, connect_kwargs=kwargs,
            events=events, continuous=continuous,
        )  # fmt: skip
        if options.gc_tuning:  # everything is imported and set up by now
            from errands import _gc

            _gc.tune()
        await worker.start()
        if cron is not None:
            await cron.start()
    except BaseException:
        if owned:
            await pool.close()
        raise
    return Runner(worker, pool if owned else None, cron)


async def run(
    conninfo_or_pool: str | AsyncConnectionPool[Any],
    tasks: TaskSource,
    options: WorkerOptions | None = None,
    *,
    events: Events | None = None,
    handle_signals: bool = False,
    **overrides: Unpack[WorkerOverrides],
) -> Runner:
    """Start a continuous worker and return its :class:`Runner` once it is listening.

    :param conninfo_or_pool: a libpq connection string (the worker opens and closes a
        pool of ``max_pool_size`` connections, default ``concurrency + 2``) or your own
        :class:`AsyncConnectionPool` (left open; give it ``kwargs={"prepare_threshold":
        None}`` for PgBouncer).  One more connection is used for LISTEN.
    :param tasks: anything :func:`errands.tasks.load_tasks` accepts.
    :param options: a :class:`WorkerOptions` (see its fields); any of its fields may
        also be given as a keyword argument, which replaces it
        (``run(dsn, tasks, concurrency=20)``).  Checked before connecting.
    :param events: an :class:`Events` to emit to (``runner.events`` otherwise).
    :param handle_signals: SIGINT/SIGTERM stop the worker gracefully; a second one forces.
    """
    resolved = resolve(options, overrides)  # before connecting
    runner = await _start(conninfo_or_pool, tasks, resolved, continuous=True, events=events)
    if handle_signals:
        runner.handle_signals()
    return runner


async def run_once(
    conninfo_or_pool: str | AsyncConnectionPool[Any],
    tasks: TaskSource,
    options: WorkerOptions | None = None,
    *,
    events: Events | None = None,
    handle_signals: bool = False,
    **overrides: Unpack[WorkerOverrides],
) -> None:
    """Run every job that is runnable now (and those that become runnable by these
    jobs finishing, e.g. the next job of a named queue), then return.  No LISTEN, no
    registration; the options of a continuous worker (``poll_interval``,
    ``heartbeat_*``, ``listen``) do not apply and a ``crontab`` is refused.
    Parameters as for :func:`run`."""
    resolved = resolve(options, overrides)
    if resolved.crontab is not None:
        raise ValueError("errands: a crontab needs a continuous worker (run, not run_once)")
    runner = await _start(conninfo_or_pool, tasks, resolved, continuous=False, events=events)
    if handle_signals:
        runner.handle_signals()
    await runner.wait()


def run_sync(
    conninfo_or_pool: str,
    tasks: TaskSource,
    options: WorkerOptions | None = None,
    *,
    once: bool = False,
    handle_signals: bool = True,
    events: Events | None = None,
    **overrides: Unpack[WorkerOverrides],
) -> None:
    """Run a worker in a new event loop until it stops (for code without a loop).

    ``once=True`` runs :func:`run_once`; otherwise :func:`run` until SIGINT/SIGTERM
    (handled when ``handle_signals``: the first signal shuts down gracefully, the
    second forces).  ``options`` and keyword overrides as for :func:`run`.
    """
    resolved = resolve(options, overrides)

    async def main() -> None:
        if once:
            await run_once(
                conninfo_or_pool, tasks, resolved, events=events, handle_signals=handle_signals
            )
        else:
            runner = await run(
                conninfo_or_pool, tasks, resolved, events=events, handle_signals=handle_signals
            )
            await runner.wait()

    if sys.platform == "win32":  # psycopg's async mode needs the selector loop there
        asyncio.set_event_loop_policy(asyncio.WindowsSelectorEventLoopPolicy())  # type: ignore[attr-defined]
    asyncio.run(main())

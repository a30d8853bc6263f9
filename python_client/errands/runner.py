"""Entry points: :func:`run` (continuous), :func:`run_once`, :func:`run_sync`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sys
from typing import Any

from psycopg_pool import AsyncConnectionPool

from errands._connections import PoolSource, connect_kwargs, params_of_pool, utc_by_its_name
from errands._cron import CronScheduler, CrontabSource
from errands._heartbeat import check_heartbeat
from errands._install import install_if_needed_async
from errands._retry import connection_alive
from errands.events import Events
from errands.logs import attach_job_logging
from errands.tasks import TaskSource, load_tasks
from errands.worker import ForbiddenFlags, Worker

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
    concurrency: int,
    max_pool_size: int | None,
    *,
    continuous: bool = True,
    prepare: bool | None = None,
) -> tuple[AsyncConnectionPool[Any], bool]:
    if isinstance(conninfo_or_pool, AsyncConnectionPool):
        return conninfo_or_pool, False
    size = max_pool_size or concurrency + 2
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        conninfo_or_pool,
        # run-once: wait for one connection only; the pool grows on demand.
        min_size=min(2 if continuous else 1, size),
        max_size=size,
        kwargs=connect_kwargs(prepare),
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
    *,
    continuous: bool,
    concurrency: int,
    poll_interval: float,
    forbidden_flags: ForbiddenFlags,
    shutdown_timeout: float,
    install: bool,
    events: Events | None,
    crontab: CrontabSource | None,
    worker_id: str | None,
    log_jobs: bool,
    quiet: bool,
    max_pool_size: int | None,
    heartbeat_interval: float = 5.0,
    heartbeat_timeout: float = 30.0,
    listen: bool = True,
    prepare: bool | None = None,
    gc_tuning: bool = False,
) -> Runner:
    registry = load_tasks(tasks)
    events = events if events is not None else Events()
    if log_jobs:
        attach_job_logging(events, quiet=quiet)
    pool, owned = await _pool_for(
        conninfo_or_pool, concurrency, max_pool_size, continuous=continuous, prepare=prepare
    )
    try:
        if install:
            async with pool.connection() as conn:
                await install_if_needed_async(conn)
        cron = CronScheduler(pool, crontab) if crontab is not None else None
        if cron is not None:
            await cron.set_crontab()  # a bad crontab fails the start
        conninfo, kwargs = params_of_pool(pool)
        worker = Worker(
            PoolSource(pool), registry, conninfo=conninfo, connect_kwargs=kwargs,
            concurrency=concurrency, poll_interval=poll_interval,
            forbidden_flags=forbidden_flags, shutdown_timeout=shutdown_timeout, events=events,
            continuous=continuous, worker_id=worker_id, listen=listen,
            heartbeat_interval=heartbeat_interval, heartbeat_timeout=heartbeat_timeout,
        )  # fmt: skip
        if gc_tuning:  # everything is imported and set up by now
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
    *,
    concurrency: int = 10,
    poll_interval: float = 2.0,
    forbidden_flags: ForbiddenFlags = None,
    shutdown_timeout: float = 30.0,
    install: bool = True,
    events: Events | None = None,
    handle_signals: bool = False,
    crontab: CrontabSource | None = None,
    worker_id: str | None = None,
    log_jobs: bool = True,
    quiet: bool = False,
    max_pool_size: int | None = None,
    heartbeat_interval: float = 5.0,
    heartbeat_timeout: float = 30.0,
    listen: bool = True,
    prepare: bool | None = None,
    gc_tuning: bool = False,
) -> Runner:
    """Start a continuous worker and return its :class:`Runner` once it is listening.

    :param conninfo_or_pool: a libpq connection string (the worker opens and closes a
        pool of ``max_pool_size`` connections, default ``concurrency + 2``) or your own
        :class:`AsyncConnectionPool` (left open).  One more connection is used for LISTEN.
    :param tasks: anything :func:`errands.tasks.load_tasks` accepts.
    :param concurrency: jobs run at the same time (async tasks, and sync tasks in threads).
    :param poll_interval: seconds between polls for jobs that became due (new jobs are
        announced by NOTIFY and start at once).
    :param forbidden_flags: skip jobs with any of these flags; a list, or a sync or
        async function called before every fetch.
    :param shutdown_timeout: seconds :meth:`Runner.stop` waits for running jobs before
        aborting them (they fail with "worker shutdown" and are retried).
    :param install: install/upgrade the errands schema first.
    :param events: an :class:`Events` to emit to (``runner.events`` otherwise).
    :param handle_signals: SIGINT/SIGTERM stop the worker gracefully; a second one forces.
    :param crontab: recurring jobs: crontab text or a file path (see docs/cron.md).
        Stored with ``errands.set_crontab`` at start; ``errands.cron_tick()`` runs at
        the top of every minute.
    :param log_jobs: log one line per job outcome (``errands.worker`` logger);
        ``quiet`` leaves out successes.
    :param heartbeat_interval: seconds between two heartbeats of this worker (> 0).
    :param heartbeat_timeout: a registered worker whose heartbeat is older than this
        is declared dead and its jobs run again (must exceed ``heartbeat_interval``).
    :param listen: ``False``: no LISTEN connection and no session state (for PgBouncer
        in transaction pooling mode): new jobs are found by polling every
        ``poll_interval``, and a crashed worker is rescued after its heartbeat times out
        (30 s) instead of at once.
    :param prepare: ``False``: no server-side prepared statements (PgBouncer in
        transaction pooling mode before 1.21); default ``$ERRANDS_PREPARE`` (on).  Only
        for the pool the worker opens itself: give your own pool
        ``kwargs={"prepare_threshold": None}``.
    :param gc_tuning: tune the garbage collector of the whole process for a worker
        (``errands._gc``: freeze what exists at start, young collections every 10,000
        allocations instead of 700); ``errands worker`` does.  Leave it off when the
        worker shares its process with other work.
    """
    check_heartbeat(heartbeat_interval, heartbeat_timeout)  # before connecting
    runner = await _start(
        conninfo_or_pool, tasks, continuous=True, concurrency=concurrency,
        poll_interval=poll_interval, forbidden_flags=forbidden_flags,
        shutdown_timeout=shutdown_timeout, install=install, events=events, crontab=crontab,
        worker_id=worker_id, log_jobs=log_jobs, quiet=quiet, max_pool_size=max_pool_size,
        heartbeat_interval=heartbeat_interval, heartbeat_timeout=heartbeat_timeout,
        listen=listen, prepare=prepare, gc_tuning=gc_tuning,
    )  # fmt: skip
    if handle_signals:
        runner.handle_signals()
    return runner


async def run_once(
    conninfo_or_pool: str | AsyncConnectionPool[Any],
    tasks: TaskSource,
    *,
    concurrency: int = 10,
    forbidden_flags: ForbiddenFlags = None,
    shutdown_timeout: float = 30.0,
    install: bool = True,
    events: Events | None = None,
    handle_signals: bool = False,
    worker_id: str | None = None,
    log_jobs: bool = True,
    quiet: bool = False,
    max_pool_size: int | None = None,
    prepare: bool | None = None,
    gc_tuning: bool = False,
) -> None:
    """Run every job that is runnable now (and those that become runnable by these
    jobs finishing, e.g. the next job of a named queue), then return.  No LISTEN.
    Parameters as for :func:`run`."""
    runner = await _start(
        conninfo_or_pool, tasks, continuous=False, concurrency=concurrency, poll_interval=1.0,
        forbidden_flags=forbidden_flags, shutdown_timeout=shutdown_timeout, install=install,
        events=events, crontab=None, worker_id=worker_id, log_jobs=log_jobs, quiet=quiet,
        max_pool_size=max_pool_size, prepare=prepare, gc_tuning=gc_tuning,
    )  # fmt: skip
    if handle_signals:
        runner.handle_signals()
    await runner.wait()


def run_sync(
    conninfo_or_pool: str,
    tasks: TaskSource,
    *,
    once: bool = False,
    handle_signals: bool = True,
    **options: Any,
) -> None:
    """Run a worker in a new event loop until it stops (for code without a loop).

    ``once=True`` runs :func:`run_once`; otherwise :func:`run` until SIGINT/SIGTERM
    (handled when ``handle_signals``: the first signal shuts down gracefully, the
    second forces).  Other keyword arguments go to :func:`run` / :func:`run_once`.
    """

    async def main() -> None:
        if once:
            await run_once(conninfo_or_pool, tasks, handle_signals=handle_signals, **options)
        else:
            runner = await run(conninfo_or_pool, tasks, handle_signals=handle_signals, **options)
            await runner.wait()

    if sys.platform == "win32":  # psycopg's async mode needs the selector loop there
        asyncio.set_event_loop_policy(asyncio.WindowsSelectorEventLoopPolicy())  # type: ignore[attr-defined]
    asyncio.run(main())

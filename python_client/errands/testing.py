"""Testing your tasks against a real database.

:func:`run_task_list_once` runs every job that is runnable now, one at a time, on
one connection, then returns -- Graphile Worker's recommended way to test tasks::

    import errands
    from errands.testing import run_task_list_once

    def test_welcome_email(conn):            # an autocommit psycopg connection
        errands.add_job(conn, "send_welcome", {"user": 1})
        run_task_list_once(conn, [send_welcome])
        assert conn.execute("SELECT count(*) FROM errands.jobs").fetchone() == (0,)

Jobs the tasks add (and the next job of a named queue) run in the same call;
failed jobs are retried later (``run_at`` in the future), so they are not rerun.
Give a sync :class:`psycopg.Connection` (its changes must be committed: the worker
opens a connection of its own to the same database), a conninfo string, or, from
async code, an :class:`psycopg.AsyncConnection` to
:func:`run_task_list_once_async` (which then works on that very connection, inside
its transaction if one is open).

Pytest fixture: add ``pytest_plugins = ["errands.testing"]`` to your root
``conftest.py`` and define an ``errands_conninfo`` fixture returning a DSN of a
database with errands installed; then ask for ``errands_run_once``::

    def test_x(errands_run_once):
        ...
        errands_run_once([my_task])          # = run_task_list_once(errands_conninfo, ...)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg

from errands._connections import SingleConnectionSource, params_of_connection
from errands._options import ForbiddenFlags, WorkerOptions
from errands.events import Events
from errands.logs import attach_job_logging
from errands.tasks import TaskSource, load_tasks
from errands.worker import Worker


async def run_task_list_once_async(
    conn_or_conninfo: psycopg.AsyncConnection[Any] | str,
    tasks: TaskSource,
    *,
    forbidden_flags: ForbiddenFlags = None,
    events: Events | None = None,
    worker_id: str | None = None,
    log_jobs: bool = True,
) -> None:
    """Run the runnable jobs of ``tasks`` one at a time on one connection, then return."""
    if isinstance(conn_or_conninfo, str):
        async with await psycopg.AsyncConnection.connect(conn_or_conninfo, autocommit=True) as c:
            await _run(c, conn_or_conninfo, tasks, forbidden_flags, events, worker_id, log_jobs)
    else:
        conninfo = params_of_connection(conn_or_conninfo)
        await _run(conn_or_conninfo, conninfo, tasks, forbidden_flags, events, worker_id, log_jobs)


async def _run(
    conn: psycopg.AsyncConnection[Any],
    conninfo: str,
    tasks: TaskSource,
    forbidden_flags: ForbiddenFlags,
    events: Events | None,
    worker_id: str | None,
    log_jobs: bool,
) -> None:
    events = events if events is not None else Events()
    if log_jobs:
        attach_job_logging(events)
    options = WorkerOptions(concurrency=1, forbidden_flags=forbidden_flags, worker_id=worker_id)
    worker = Worker(
        SingleConnectionSource(conn), load_tasks(tasks), options, conninfo=conninfo,
        events=events, continuous=False,
    )  # fmt: skip
    await worker.start()
    await worker.wait()


def run_task_list_once(
    conn_or_conninfo: psycopg.Connection[Any] | str,
    tasks: TaskSource,
    *,
    forbidden_flags: ForbiddenFlags = None,
    events: Events | None = None,
    worker_id: str | None = None,
    log_jobs: bool = True,
) -> None:
    """Blocking :func:`run_task_list_once_async` for sync code (e.g. plain pytest tests).

    With a :class:`psycopg.Connection` the jobs run on a new connection to the same
    database (so commit first, or use an autocommit connection).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "errands: run_task_list_once() blocks; from async code use run_task_list_once_async()"
        )
    if isinstance(conn_or_conninfo, str):
        conninfo = conn_or_conninfo
    else:
        conninfo = params_of_connection(conn_or_conninfo)
    coro = run_task_list_once_async(
        conninfo, tasks, forbidden_flags=forbidden_flags, events=events,
        worker_id=worker_id, log_jobs=log_jobs,
    )  # fmt: skip
    asyncio.run(coro)


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pass
else:

    @pytest.fixture
    def errands_run_once(errands_conninfo: str) -> Callable[..., None]:
        """``errands_run_once(tasks, **options)``: :func:`run_task_list_once` on the
        database of your ``errands_conninfo`` fixture."""

        def run_once(tasks: TaskSource, **options: Any) -> None:
            run_task_list_once(errands_conninfo, tasks, **options)

        return run_once

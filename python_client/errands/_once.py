"""A run-once worker's first step, done on one blocking connection.

``errands worker --once`` is run from cron and CI steps, often against an empty
queue.  A run-once worker starts with a stale-lock sweep and a fetch; this module
does both on the caller's (already open) connection, in one transaction, before
any of the worker's machinery (event loop, pool, threads) is loaded:

* a runnable job: everything is rolled back (the job is neither locked nor charged
  an attempt) and the caller starts the real worker, which sweeps and fetches again;
* nothing runnable: the sweep is committed and the events of a run-once worker that
  found nothing (``worker:sweep``, ``worker:start``, ``worker:stop``) are emitted.

It imports nothing the CLI's start-up does not already load (no ``errands.worker``).
"""

from __future__ import annotations

from typing import Any

import psycopg

from errands import _queries as q
from errands._options import WorkerOptions, new_worker_id
from errands._retry import retry_transient_sync
from errands.events import Event, Events
from errands.logs import attach_job_logging


def finds_nothing_to_run(
    conn: psycopg.Connection[Any],
    identifiers: list[str],
    options: WorkerOptions,
    events: Events | None = None,
) -> bool:
    """Whether a run-once worker for the tasks ``identifiers`` would find nothing
    to run now (then it has done the worker's sweep and emitted its events to
    ``events``, by default logged as :func:`errands.run_once` logs them)."""
    worker_id = options.worker_id or new_worker_id()
    flags = options.forbidden_flags
    if callable(flags):
        return False  # may be async: the worker asks it
    params = {"worker_id": worker_id, "tasks": identifiers, "count": 1,
              "forbidden": list(flags) if flags else None,
              "async_commit": False}  # shares its transaction with the sweep  # fmt: skip

    def probe() -> tuple[Any, bool]:
        found = False
        with conn.transaction() as tx:
            swept = conn.execute(q.RESET_LOCKED).fetchone()
            if conn.execute(q.GET_JOBS, params).fetchone() is not None:
                found = True
                raise psycopg.Rollback(tx)
        return swept, found

    # Like the worker's sweep: a deadlock/serialization failure (with another
    # worker's sweep) just runs again.
    swept, found = retry_transient_sync(probe, "the --once sweep and fetch")
    if found:
        return False
    if events is None:
        events = Events()
        if options.log_jobs:
            attach_job_logging(events, quiet=options.quiet)
    count = (next(iter(swept.values())) if isinstance(swept, dict) else swept[0]) if swept else 0
    events.emit(Event("worker:sweep", worker_id, data={"count": count}))
    data = {"tasks": identifiers, "concurrency": options.concurrency}
    events.emit(Event("worker:start", worker_id, data=data))
    events.emit(Event("worker:stop", worker_id))
    return True

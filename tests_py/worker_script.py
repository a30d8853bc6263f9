"""A worker process for the tests: ``python worker_script.py DSN [options]``.

Prints ``ready`` once the worker listens.  Its tasks write to the ``marks`` table
(see worker_support.MARKS_TABLE): ``(label, "started"/"finished"/...)``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import errands
from errands import Helpers, task


async def _mark(helpers: Helpers, label: str, what: str) -> None:
    async with helpers.connection() as conn:
        await conn.execute(
            "INSERT INTO marks (label, what, worker_id) VALUES (%s, %s, %s)",
            [label, what, helpers.worker_id],
        )


@task
async def sleepy(payload: dict[str, Any], helpers: Helpers) -> None:
    """Sleeps payload["seconds"]; marks started/finished."""
    await _mark(helpers, payload["label"], "started")
    await asyncio.sleep(payload["seconds"])
    await _mark(helpers, payload["label"], "finished")


@task
def sync_sleepy(payload: dict[str, Any], helpers: Helpers) -> None:
    """Like sleepy, in a thread, ignoring the abort signal."""
    with helpers.sync_connection() as conn:
        conn.execute("INSERT INTO marks (label, what) VALUES (%s, 'started')", [payload["label"]])
    time.sleep(payload["seconds"])
    with helpers.sync_connection() as conn:
        conn.execute("INSERT INTO marks (label, what) VALUES (%s, 'finished')", [payload["label"]])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--shutdown-timeout", type=float, default=30.0)
    args = parser.parse_args()

    events = errands.Events()
    events.on("worker:start", lambda _e: print("ready", flush=True))
    events.on("worker:return", lambda e: print("returned", *e.data["job_ids"], flush=True))
    options: dict[str, Any] = {} if args.once else {"poll_interval": args.poll_interval}
    errands.run_sync(
        args.dsn,
        [sleepy, sync_sleepy],
        once=args.once,
        concurrency=args.concurrency,
        shutdown_timeout=args.shutdown_timeout,
        events=events,
        install=False,
        **options,
    )
    print("exited", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()

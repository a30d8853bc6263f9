"""One chaos worker process: ``python chaos/worker.py DSN WORKER_ID [options]``.

What ``errands worker --tasks chaos/tasks.py`` does, with a fixed worker id (the
harness needs to know which worker it kills) and the heartbeat settings passed to
:class:`errands.worker.Worker` (so a cut-off host is declared dead quickly).  Logs
go to stderr (job outcomes quietly: only errors and lost locks); with ``--starts
FILE`` every job start is appended to FILE (``job_id attempt unix_time``).  Prints
``ready <worker id>`` once listening; SIGTERM/SIGINT stop it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

import errands
from errands._connections import PoolSource
from errands.events import Event
from errands.logs import attach_job_logging
from errands.worker import Worker

TASKS = str(Path(__file__).resolve().parent / "tasks.py")


async def main(args: argparse.Namespace) -> None:
    pool: AsyncConnectionPool = AsyncConnectionPool(
        args.dsn, min_size=2, max_size=args.concurrency + 2,
        kwargs={"autocommit": True}, open=False, name="chaos",
    )  # fmt: skip
    await pool.open(wait=True, timeout=30.0)
    events = errands.Events()
    attach_job_logging(events, quiet=True)
    events.on("worker:start", lambda _e: print("ready", args.worker_id, flush=True))
    if args.starts:
        # One line per job start, appended unbuffered: it survives a SIGKILL.
        fd = os.open(args.starts, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

        def on_start(event: Event) -> None:
            if event.job is not None:
                line = f"{event.job.id} {event.job.attempts} {time.time():.6f}\n"
                os.write(fd, line.encode())

        events.on("job:start", on_start)
    worker = Worker(
        PoolSource(pool), errands.load_tasks([TASKS]), conninfo=args.dsn,
        connect_kwargs={"autocommit": True}, concurrency=args.concurrency,
        poll_interval=args.poll_interval, events=events, worker_id=args.worker_id,
        heartbeat_interval=args.heartbeat_interval, heartbeat_timeout=args.heartbeat_timeout,
        shutdown_timeout=5.0,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop, sig.name)
    try:
        await worker.start()
        await worker.wait()
    finally:
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("worker_id")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--heartbeat-interval", type=float, default=5.0)
    parser.add_argument("--heartbeat-timeout", type=float, default=30.0)
    parser.add_argument("--starts", help="append 'job_id attempt time' per job start here")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
    )  # fmt: skip
    asyncio.run(main(parser.parse_args()))

"""Enqueue the example jobs of examples/tasks.py (used by `make demo`).

    python examples/enqueue.py "$(errands db url)"    # or a DSN, or $DATABASE_URL

All jobs are added in one transaction on your own connection: they exist once it
commits (and a worker is woken by NOTIFY at that moment), or not at all.
"""

from __future__ import annotations

import os
import sys

import psycopg

from errands import add_job


def main(dsn: str) -> None:
    with psycopg.connect(dsn) as conn, conn.transaction():
        jobs = [
            add_job(conn, "hello", {"name": "world"}),
            add_job(conn, "flaky", {}),
            add_job(
                conn, "send_emails", ["ada@example.com", "bounce@example.com", "alan@example.com"]
            ),
            *(
                add_job(conn, "queued_step", {"step": step, "of": 3}, queue_name="serial-demo")
                for step in (1, 2, 3)
            ),
        ]
    for job in jobs:
        queue = f" in queue {job.queue_name}" if job.queue_name else ""
        print(f"enqueued {job.task_identifier} #{job.id}{queue}")


if __name__ == "__main__":
    dsn = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DATABASE_URL", "")
    main(dsn)

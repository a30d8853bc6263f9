"""PgQueuer peer for the Errands benchmark (bench/run.py --peers), run in bench/peers/.venv.

    python pgqueuer_runner.py install DSN
    python pgqueuer_runner.py enqueue DSN N          bulk Queries.enqueue of N no-ops
    python pgqueuer_runner.py once DSN CONCURRENCY   drain the queue, then exit

Configuration, as PgQueuer's own benchmark (tools/benchmark.py, "drain" strategy) runs
it: asyncpg driver, uvloop, ``QueueExecutionMode.drain`` (exits once the queue is
empty and the in-flight tasks are done).  One QueueManager in one process;
"concurrency c" is its hard cap ``max_concurrent_tasks=c`` (enforced by the dequeue
query), with ``batch_size=c // 2`` (PgQueuer requires the cap to be at least twice
the batch size).  Default durability (logged tables), like the other queues.

Each command prints one JSON line: ``enqueue`` {"seconds": s} (the enqueue call alone),
``once`` {"ok", "failed", "distinct"} counted by the task (ok) and from job ids.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta

import asyncpg
import uvloop
from pgqueuer import AsyncpgDriver, Queries
from pgqueuer.models import Job
from pgqueuer.qm import QueueManager
from pgqueuer.types import QueueExecutionMode


async def install(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        if not await queries.schema_is_installed():
            await queries.install()
    finally:
        await conn.close()


async def enqueue(dsn: str, n: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        t0 = time.perf_counter()
        ids = await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        seconds = time.perf_counter() - t0
    finally:
        await conn.close()
    assert len(ids) == n, len(ids)
    print(json.dumps({"seconds": seconds}), flush=True)


async def once(dsn: str, concurrency: int) -> None:
    conn = await asyncpg.connect(dsn)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))
    ok = 0
    ids: set[int] = set()

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        nonlocal ok
        ok += 1
        ids.add(int(job.id))

    await qm.run(
        batch_size=concurrency,
        mode=QueueExecutionMode.drain,
        dequeue_timeout=timedelta(seconds=1),
    )
    await conn.close()
    out = {"ok": ok, "failed": 0, "distinct": len(ids), "vmhwm_mb": vmhwm_mb()}
    print(json.dumps(out), flush=True)


def vmhwm_mb() -> float:
    """Peak RSS of this process (VmHWM), MB: see bench/worker.py."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main() -> None:
    command, dsn = sys.argv[1], sys.argv[2]
    if command == "install":
        uvloop.run(install(dsn))
    elif command == "enqueue":
        uvloop.run(enqueue(dsn, int(sys.argv[3])))
    elif command == "once":
        uvloop.run(once(dsn, int(sys.argv[3])))
    else:
        raise SystemExit(f"unknown command {command!r}: install | enqueue | once")


if __name__ == "__main__":
    main()

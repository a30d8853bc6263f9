"""PgQueuer peer for the Errands benchmark (bench/run.py --peers), run in bench/peers/.venv.

    python pgqueuer_runner.py install DSN
    python pgqueuer_runner.py enqueue DSN N          bulk Queries.enqueue of N no-ops
    python pgqueuer_runner.py once DSN CONCURRENCY   drain the queue, then exit
    python pgqueuer_runner.py continuous DSN CONCURRENCY LATENCY_FILE
                                                     W2: print READY, run until SIGTERM

Configuration of ``once``, as PgQueuer's own benchmark (tools/benchmark.py, "drain"
strategy) runs it: asyncpg driver, uvloop, ``QueueExecutionMode.drain`` (exits once
the queue is empty and the in-flight tasks are done).  One QueueManager in one
process; "concurrency c" is ``batch_size=c`` without the ``max_concurrent_tasks`` cap
(bench/README.md says why).  Default durability (logged tables), like the other queues.

``continuous`` (W2) is what its docs and its ``pgq run`` command run by default:
``QueueManager.run()`` in continuous mode with its defaults (no
``max_concurrent_tasks``, ``dequeue_timeout`` 30 s), its own LISTEN/NOTIFY wake-up
(the statement-level trigger on its table notifies the channel), uvloop as ``pgq run``
uses when installed; ``batch_size=CONCURRENCY`` (W2 passes 10, its default).  The
``latency`` task appends start - payload "t" (ms) to LATENCY_FILE, as Graphile's run.js
and bench/tasks.py do.

Each command prints one JSON line: ``enqueue`` {"seconds": s} (the enqueue call alone),
``once`` {"ok", "failed", "distinct"} counted by the task (ok) and from job ids.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from datetime import timedelta
from typing import Any

import asyncpg
import uvloop
from pgqueuer import AsyncpgDriver, Queries
from pgqueuer.core import listeners
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


async def continuous(dsn: str, concurrency: int, latency_file: str) -> None:
    conn = await asyncpg.connect(dsn)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))
    ok = 0
    ids: set[int] = set()
    out = open(latency_file, "a", buffering=1)  # noqa: SIM115

    @qm.entrypoint("latency")
    async def latency(job: Job) -> None:
        start = time.time()
        nonlocal ok
        ok += 1
        ids.add(int(job.id))
        out.write(f"{(start - float(json.loads(job.payload or b'{}')['t'])) * 1000.0:.4f}\n")

    # READY once its LISTEN is in place (W2 adds jobs after READY): PgQueuer has no
    # hook for that, so its listener set-up is wrapped here, in the bench's runner.
    setup = listeners.initialize_notice_event_listener

    async def ready(*args: Any, **kwargs: Any) -> None:
        await setup(*args, **kwargs)
        print("READY", flush=True)

    listeners.initialize_notice_event_listener = ready  # type: ignore[assignment]
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, qm.shutdown.set)
    await qm.run(batch_size=concurrency)
    await conn.close()
    out.close()
    report = {"ok": ok, "failed": 0, "distinct": len(ids), "vmhwm_mb": vmhwm_mb()}
    print(json.dumps(report), flush=True)


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
    elif command == "continuous":
        uvloop.run(continuous(dsn, int(sys.argv[3]), sys.argv[4]))
    else:
        raise SystemExit(f"unknown command {command!r}: install | enqueue | once | continuous")


if __name__ == "__main__":
    main()

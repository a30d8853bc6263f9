"""Procrastinate peer for the Errands benchmark (bench/run.py --peers), in bench/peers/.venv.

    python procrastinate_runner.py install DSN
    python procrastinate_runner.py enqueue DSN N          Task.batch_defer_async of N no-ops
    python procrastinate_runner.py once DSN CONCURRENCY   run until caught up, then exit

Configuration: the documented async worker, ``App.run_worker_async(concurrency=c,
wait=False)`` (``wait=False``: "the worker will terminate as soon as it has caught up
with the queues"), psycopg 3 connector, LISTEN/NOTIFY on (the default), no signal
handlers.  Jobs are kept in ``procrastinate_jobs`` as ``succeeded`` (the default
``delete_jobs="never"``).

Each command prints one JSON line: ``enqueue`` {"seconds": s} (the defer call alone),
``once`` {"ok", "failed", "distinct"} counted by the task (ok) and from job ids.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time

from procrastinate import App, JobContext, PsycopgConnector

logging.basicConfig(level=logging.ERROR)  # before App(): it warns about __main__
ok = 0
ids: set[int] = set()
app = App(connector=PsycopgConnector())


@app.task(name="noop", pass_context=True)
async def noop(context: JobContext) -> None:
    global ok
    ok += 1
    if context.job.id is not None:
        ids.add(context.job.id)


def use(dsn: str) -> None:
    app.connector = PsycopgConnector(conninfo=dsn)  # type: ignore[misc]
    app.job_manager.connector = app.connector


async def install(dsn: str) -> None:
    use(dsn)
    async with app.open_async():
        exists = await app.connector.execute_query_one_async(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS e"
        )
        if not exists["e"]:
            await app.schema_manager.apply_schema_async()


async def enqueue(dsn: str, n: int) -> None:
    use(dsn)
    async with app.open_async():
        t0 = time.perf_counter()
        got = await noop.batch_defer_async(*({} for _ in range(n)))
        seconds = time.perf_counter() - t0
    assert len(got) == n, len(got)
    print(json.dumps({"seconds": seconds}), flush=True)


async def once(dsn: str, concurrency: int) -> None:
    use(dsn)
    async with app.open_async():
        await app.run_worker_async(
            concurrency=concurrency, wait=False, install_signal_handlers=False
        )
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
        asyncio.run(install(dsn))
    elif command == "enqueue":
        asyncio.run(enqueue(dsn, int(sys.argv[3])))
    elif command == "once":
        asyncio.run(once(dsn, int(sys.argv[3])))
    else:
        raise SystemExit(f"unknown command {command!r}: install | enqueue | once")


if __name__ == "__main__":
    main()

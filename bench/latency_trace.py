"""Where W2's add -> start latency goes: a trace of each job's path.

``python bench/latency_trace.py [--jobs 300]`` starts its own durable cluster (as
bench/run.py), one continuous worker process (concurrency 10, this file with
``--worker``) and adds jobs one by one, 10 ms apart, as W2 does.  Each stage is
stamped with ``time.time()`` (one machine, one clock):

* ``add``: the ``SELECT errands.add_job(...)`` call, as the client sees it (its
  commit waits for the WAL flush: ``synchronous_commit`` is on);
* ``notify``: from the end of that call to the worker reading the notification
  (negative when it arrives before the adder has read its reply);
* ``wake``: notification read -> ``get_jobs`` sent (the worker's event loop);
* ``wake``: notification read -> the worker's fetch begins (the event loop);
* ``checkout``: a connection from the worker's pool;
* ``get_jobs``: the statement's round trip (it locks the job: a write, its commit
  not waiting for the WAL flush, ``fetch_async_commit``); its server-side share,
  from ``pg_stat_user_functions`` (``track_functions = 'pl'``, the worker's session
  only), is printed below the table;
* ``rows``: the rows read and turned into jobs; ``return``: the connection back to
  the pool;
* ``start``: the fetch returned -> the task runs.

Prints the median and p90 of each stage and of the whole (payload time -> start),
and a calibration: a ``SELECT 1`` round trip (and a durable one-row INSERT) back to
back and after 10 ms idle, as W2's adds are spaced.  The worker's fetch, pool,
cursor and notification hooks are wrapped here, in the bench's own process; the
library has no such hooks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from psycopg.types.json import Json

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import PY, connect, durable_cluster  # noqa: E402

STAGES = ["add", "notify", "wake", "checkout", "get_jobs", "rows", "return", "start", "total"]


def worker(dsn: str, out_path: str) -> None:
    import contextlib

    import psycopg
    from psycopg.pq import Format

    import errands
    from errands import _connections, _json
    from errands import worker as worker_module
    from errands._presence import Presence
    from errands.job import Job

    out = open(out_path, "a", buffering=1)  # noqa: SIM115

    def stamp(kind: str, *values: float) -> None:
        out.write(json.dumps([kind, *values]) + "\n")

    fetch = worker_module.Worker._fetch
    inner: list[float] = []  # this fetch's checkout, sent, executed, rows

    async def traced_fetch(self: Any, count: int) -> Any:
        inner.clear()
        t0 = time.time()
        jobs = await fetch(self, count)
        stamp("fetch", t0, time.time(), len(jobs), *inner)
        return jobs

    pool_connection = _connections.PoolSource.connection

    @contextlib.asynccontextmanager
    async def traced_connection(self: Any) -> Any:
        async with pool_connection(self) as conn:
            inner.append(time.time())
            yield conn

    class TracedCursor(psycopg.AsyncCursor[Any]):
        async def execute(self, *args: Any, **kwargs: Any) -> Any:
            inner.append(time.time())
            got = await super().execute(*args, **kwargs)
            inner.append(time.time())
            return got

        async def fetchall(self) -> Any:
            rows = await super().fetchall()
            inner.append(time.time())
            return rows

    def traced_cursor(conn: Any) -> Any:
        # What _json.job_cursor makes, as a subclass (cursors have __slots__).
        cur = TracedCursor(conn, row_factory=Job.row_factory)
        cur.format = Format.BINARY
        _json.register(cur)
        return cur

    notified = Presence.notified

    def traced_notified(self: Any) -> None:
        stamp("notify", time.time())
        notified(self)

    worker_module.Worker._fetch = traced_fetch  # type: ignore[method-assign]
    _connections.PoolSource.connection = traced_connection  # type: ignore[method-assign,assignment]
    _json.job_cursor = traced_cursor  # type: ignore[assignment]
    Presence.notified = traced_notified  # type: ignore[method-assign]

    async def latency(payload: Any, helpers: Any) -> None:
        stamp("start", float(payload["t"]), time.time())

    async def main() -> None:
        runner = await errands.run(
            dsn, {"latency": latency}, concurrency=10, quiet=True, handle_signals=True,
            poll_interval=2.0, gc_tuning=True,
        )  # fmt: skip
        print("READY", flush=True)
        await runner.wait()

    errands.configure_logging(level=30)
    asyncio.run(main())


def trace(
    dsn: str, jobs: int, worker_options: str = "", adder_async: bool = False
) -> dict[str, dict[str, float]]:
    with tempfile.NamedTemporaryFile("r", suffix=".trace", delete=False) as tmp:
        path = Path(tmp.name)
    env = dict(os.environ)
    if worker_options:
        env["PGOPTIONS"] = worker_options
    proc = subprocess.Popen(
        [PY, __file__, "--worker", dsn, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    adds: list[tuple[float, float]] = []
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "READY":
            raise RuntimeError("trace worker did not start")
        time.sleep(1.0)
        with connect(dsn) as conn:
            conn.execute("SELECT 1")
            if adder_async:  # the add's commit does not wait for its WAL flush
                conn.execute("SET synchronous_commit = off")
            for _ in range(jobs):
                t = time.time()
                conn.execute(
                    "SELECT errands.add_job(identifier => 'latency', payload => %s::json)",
                    (Json({"t": t}),),
                )
                adds.append((t, time.time()))
                time.sleep(0.010)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.unlink(missing_ok=True)
    notifies = sorted(r[1] for r in rows if r[0] == "notify")
    # [t0, checkout, sent, executed, rows read, t1] of the fetches that took jobs
    fetches = sorted([r[1], *r[4:8], r[2]] for r in rows if r[0] == "fetch" and r[3] > 0)
    starts = {r[1]: r[2] for r in rows if r[0] == "start"}
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    for t, added in adds:
        start = starts.get(t)
        note = next((n for n in notifies if n >= t), None)
        got = [f for f in fetches if len(f) == 6 and f[5] <= (start or 0) and f[0] >= t]
        if start is None or note is None or not got:
            continue
        f0, _checkout, sent, executed, read, f1 = got[-1]
        parts = [
            added - t, note - added, f0 - note, sent - f0, executed - sent, read - executed,
            f1 - read, start - f1, start - t,
        ]  # fmt: skip
        for name, value in zip(STAGES, parts, strict=True):
            stages[name].append(value * 1000)

    def pct(values: list[float], p: float) -> float:
        values = sorted(values)
        return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]

    return {
        name: {"p50": statistics.median(v), "p90": pct(v, 90), "n": len(v)}
        for name, v in stages.items()
        if v
    }


def server_fetch_ms(dsn: str) -> tuple[int, float]:
    """get_jobs calls and their mean server time (ms), from pg_stat_user_functions."""
    with connect(dsn) as conn:
        row = conn.execute(
            "SELECT calls, total_time FROM pg_stat_user_functions"
            " WHERE schemaname = 'errands' AND funcname = 'get_jobs'"
        ).fetchone()
    return (0, 0.0) if row is None or not row[0] else (int(row[0]), float(row[1]) / row[0])


def round_trips(dsn: str, n: int = 200) -> dict[str, float]:
    """p50 (ms) of a SELECT 1 and of a durable one-row INSERT, back to back and after
    10 ms idle: what a process wake-up after idle costs on this machine."""
    out: dict[str, float] = {}
    with connect(dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_round_trip (x int)")
        insert = "INSERT INTO bench_round_trip VALUES (1)"
        for what, sql in (("SELECT 1", "SELECT 1"), ("INSERT", insert)):
            for gap in (0.0, 0.010):
                times = []
                for _ in range(n):
                    if gap:
                        time.sleep(gap)
                    t0 = time.perf_counter()
                    conn.execute(sql)
                    times.append((time.perf_counter() - t0) * 1000)
                out[f"{what}, {'10 ms idle before' if gap else 'back to back'}"] = (
                    statistics.median(times)
                )
        conn.execute("DROP TABLE bench_round_trip")
    return out


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument(
        "--worker-options",
        default="",
        help="PGOPTIONS of the worker process only, e.g. '-c synchronous_commit=off' to"
        " see what its commits' WAL flushes cost",
    )
    parser.add_argument(
        "--adder-async",
        action="store_true",
        help="the adder's session with synchronous_commit off: what the add's WAL flush costs",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import errands

    os.environ.pop("BENCH_LATENCY_FILE", None)
    with durable_cluster() as cluster:
        dsn = cluster.dsn()
        with connect(dsn) as conn:
            errands.install(conn)
        calib = round_trips(dsn)
        # The worker's session only: counting function calls costs a little.
        options = f"-c track_functions=pl {args.worker_options}".strip()
        res = trace(dsn, args.jobs, options, args.adder_async)
        calls, server = server_fetch_ms(dsn)
    print("| stage | p50 ms | p90 ms |")
    print("|---|---|---|")
    for name, v in res.items():
        print(f"| {name} | {v['p50']:.2f} | {v['p90']:.2f} |")
    print(f"({res['total']['n']} of {args.jobs} jobs traced)")
    print(f"get_jobs server time: {server:.2f} ms mean over {calls} calls (polls included)")
    print("round trips on the adder's connection, p50 ms:")
    for what, ms in calib.items():
        print(f"  {what}: {ms:.3f}")


if __name__ == "__main__":
    main()

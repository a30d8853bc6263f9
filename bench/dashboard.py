"""Dashboard page times on a big database (issue 15): ``python bench/dashboard.py [--quick]``.

On a throwaway cluster (as bench/run.py): ``--jobs`` unfinished jobs (default
1,000,000: pending, scheduled, retrying, failed, a few running, some in named
queues) and ``--finished`` finished jobs (default 1,000,000, spread over 10 days)
filled with INSERT ... SELECT generate_series, then VACUUM ANALYZE. A real
``errands dashboard`` (uvicorn) serves them; each page is requested ``--n`` times
(round robin over the pages) and the median of its ``Server-Timing: app;dur=``
header (server time) is reported, with the target of 200 ms.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import errands
from bench.common import ERRANDS_CLI, connect, durable_cluster, log, scalar

TASKS = 20
QUEUES = 200
TARGET_MS = 200.0


def fill(dsn: str, jobs: int, finished: int) -> None:
    with connect(dsn) as conn:
        errands.install(conn)
        conn.execute("SELECT errands.set_retention('1 day')")
        conn.execute("INSERT INTO errands._tasks (identifier) "
                     "SELECT 'task_' || i FROM generate_series(1, %s) i", [TASKS])
        conn.execute("INSERT INTO errands._queues (queue_name) "
                     "SELECT 'queue_' || i FROM generate_series(1, %s) i", [QUEUES])
        log(f"filling {jobs:,} jobs")
        t0 = time.perf_counter()
        # i % 100: 0-69 pending, 70-84 scheduled, 85-92 retrying, 93-97 failed,
        # 98 in a named queue (pending), 99 waiting-free pending with a key.
        conn.execute(
            """
            INSERT INTO errands._jobs (task_id, job_queue_id, payload, run_at, attempts,
                                       max_attempts, last_error, created_at, updated_at, key)
            SELECT (SELECT min(id) FROM errands._tasks) + i %% %(tasks)s,
                   CASE WHEN i %% 100 = 98
                        THEN (SELECT min(id) FROM errands._queues) + i %% %(queues)s END,
                   json_build_object('user', i %% 5000, 'order', i, 'note', 'bench'),
                   CASE WHEN i %% 100 BETWEEN 70 AND 84
                        THEN now() + (i %% 1000) * interval '1 minute'
                        ELSE now() - (i %% 10000) * interval '1 second' END,
                   CASE WHEN i %% 100 BETWEEN 85 AND 92 THEN 1 + i %% 3
                        WHEN i %% 100 BETWEEN 93 AND 97 THEN 5 ELSE 0 END,
                   5,
                   CASE WHEN i %% 100 BETWEEN 85 AND 97
                        THEN 'Error: upstream said ' || (i %% 17) || ' at step ' || (i %% 7) END,
                   now() - (i %% 100000) * interval '1 second',
                   now() - (i %% 7200) * interval '1 second',
                   CASE WHEN i %% 100 = 99 THEN 'key:' || i END
            FROM generate_series(1, %(n)s) i
            """,
            {"tasks": TASKS, "queues": QUEUES, "n": jobs},
        )
        # A few running jobs (no limits apply to these tasks: no slot counters to keep).
        conn.execute("UPDATE errands._jobs SET locked_at = now(), locked_by = 'bench-w', "
                     "attempts = 1 WHERE id IN (SELECT id FROM errands._jobs "
                     "WHERE job_queue_id IS NULL AND attempts = 0 LIMIT 40)")
        # Registered workers: the workers page then finds their running jobs (a scan:
        # there is deliberately no index on locked_by).
        conn.execute("SELECT errands.register_worker('bench-w', 'bench-host', 1, false)")
        conn.execute("SELECT errands.register_worker('bench-w2', 'bench-host', 2, false)")
        log(f"filled jobs in {time.perf_counter() - t0:.1f} s; filling {finished:,} finished jobs")
        t0 = time.perf_counter()
        conn.execute(
            """
            INSERT INTO errands._finished_jobs (id, queue_name, task_identifier, payload, priority,
                attempts, max_attempts, last_error, key, created_at, finished_at, state, result)
            SELECT 100000000 + i, NULL, 'task_' || (1 + i %% %(tasks)s),
                   json_build_object('user', i %% 5000, 'order', i), 0, 1, 25,
                   CASE WHEN i %% 10 = 0 THEN 'errands: cancelled by cancel_jobs' END, NULL,
                   f - (i %% 30) * interval '1 second', f,
                   CASE WHEN i %% 10 = 0 THEN 'cancelled' ELSE 'completed' END,
                   '{"ok": true}'
            FROM generate_series(1, %(n)s) i,
                 LATERAL (SELECT now() - (i * 864000.0 / %(n)s) * interval '1 second' AS f) t
            """,
            {"tasks": TASKS, "n": finished},
        )
        conn.execute("SELECT errands.set_crontab('*/5 * * * * task_1' || chr(10) || "
                     "'0 4 * * 1 task_2 ?id=weekly')")
        conn.execute("SELECT errands.add_flow(%s::jsonb)", [
            '{"steps": [{"name": "a", "task": "task_1"},'
            ' {"name": "b", "task": "task_2", "depends_on": ["a"]},'
            ' {"name": "c", "task": "task_3", "depends_on": ["a"]},'
            ' {"name": "d", "task": "task_4", "depends_on": ["b", "c"]}]}'])
        log(f"filled finished jobs in {time.perf_counter() - t0:.1f} s; VACUUM ANALYZE")
        conn.execute("VACUUM ANALYZE errands._jobs")
        conn.execute("VACUUM ANALYZE errands._finished_jobs")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pages(dsn: str) -> list[tuple[str, str, dict[str, str] | None]]:
    """(name, path, form: POST when given) of every page measured."""
    with connect(dsn) as conn:
        live = scalar(conn, "SELECT max(id) FROM errands._jobs")
        done = scalar(conn, "SELECT min(id) FROM errands._finished_jobs")
        flow = scalar(conn, "SELECT max(id) FROM errands._flows")
    cursor = urllib.parse.quote(f"{live - 50}")
    return [
        ("overview", "/?refresh=0", None),
        ("jobs", "/jobs", None),
        ("jobs page 2 (after)", f"/jobs?after={cursor}", None),
        ("jobs state=failed", "/jobs?state=failed", None),
        ("jobs state=running", "/jobs?state=running", None),
        ("jobs state=scheduled sort=run_at", "/jobs?state=scheduled&sort=run_at", None),
        ("jobs sort=-run_at", "/jobs?sort=-run_at", None),
        ("jobs sort=-attempts", "/jobs?sort=-attempts", None),
        ("jobs task=task_7", "/jobs?task=task_7", None),
        ("jobs queue=queue_98", "/jobs?queue=queue_98", None),
        ("jobs key=key:99", "/jobs?key=key:99", None),
        ("jobs error=step 3", "/jobs?error=step+3", None),
        ("jobs payload user 42", "/jobs?payload=" + urllib.parse.quote('{"user": 42}'), None),
        ("jobs since/until", "/jobs?since=2020-01-01T00:00Z&until=2100-01-01T00:00Z", None),
        ("jobs state=completed", "/jobs?state=completed", None),
        ("jobs state=completed sort=-run_at", "/jobs?state=completed&sort=-run_at", None),
        ("jobs state=cancelled task", "/jobs?state=cancelled&task=task_3", None),
        ("job detail", f"/jobs/{live}", None),
        ("finished job detail", f"/jobs/{done}", None),
        ("queues and tasks", "/queues", None),
        ("workers", "/workers", None),
        ("cron", "/cron", None),
        ("flows", "/flows", None),
        ("flow graph", f"/flows/{flow}", None),
        ("bulk confirm (count) task", "/jobs/bulk", {"action": "retry", "task": "task_7",
                                                     "state": "failed"}),
    ]


def measure(dsn: str, n: int) -> dict[str, float]:
    port = _free_port()
    proc = subprocess.Popen([ERRANDS_CLI, "dashboard", "--port", str(port), "-c", dsn],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the dashboard did not start") from None
                time.sleep(0.1)
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(base + "/jobs", timeout=60).read()
        csrf = next(c.value for c in jar if c.name == "errands_csrf")
        todo = pages(dsn)
        times: dict[str, list[float]] = {name: [] for name, _, _ in todo}
        for _ in range(n):  # round robin: each page sees the same conditions
            for name, path, form in todo:
                data = None
                if form is not None:
                    data = urllib.parse.urlencode({**form, "csrf_token": csrf}).encode()
                try:
                    with opener.open(urllib.request.Request(base + path, data=data),
                                     timeout=60) as r:
                        r.read()
                        timing = r.headers.get("Server-Timing", "")
                except urllib.error.HTTPError as exc:
                    raise RuntimeError(f"{name} ({path}): HTTP {exc.code}") from None
                match = re.fullmatch(r"app;dur=([0-9.]+)", timing)
                assert match, (name, timing)
                times[name].append(float(match.group(1)))
        return {name: statistics.median(v) for name, v in times.items()}
    finally:
        proc.terminate()
        proc.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests per page (5)")
    parser.add_argument("--n", type=int, default=None, help="requests per page (default 20)")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--finished", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.n or (5 if args.quick else 20)
    with durable_cluster() as cluster:
        dsn = cluster.dsn()
        fill(dsn, args.jobs, args.finished)
        log(f"measuring {n} requests per page")
        medians = measure(dsn, n)
    print(f"dashboard: server time (Server-Timing), median of {n} requests, "
          f"{args.jobs:,} jobs + {args.finished:,} finished jobs; target < {TARGET_MS:.0f} ms")
    worst = max(medians.values())
    for name, ms in medians.items():
        flag = "" if ms < TARGET_MS else "  OVER TARGET"
        print(f"  {name:<36} {ms:8.1f} ms{flag}", flush=True)
    print(f"dashboard: slowest page {worst:.1f} ms "
          f"({'met' if worst < TARGET_MS else 'NOT met'}: < {TARGET_MS:.0f} ms)")


if __name__ == "__main__":
    main()

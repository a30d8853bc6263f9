"""`RSS.1M`: a worker's resident memory as the jobs it ran add up.

One run-once worker process (``bench/worker.py``, concurrency 10, as ``errands worker
--once -j 10``) runs N no-op jobs enqueued beforehand (chunks of 100,000 ``add_jobs``)
and samples its RSS (``VmRSS``) every 1/20 of N.  Reported: the RSS at the end, the
slope over the second half (MB per 100,000 jobs: what grows with work done, once the
warm-up allocations are in) and, when N < 1,000,000, the end RSS extrapolated to
1,000,000 jobs with that slope.  Checked: N completions, none failed, no job left
(the worker keeps no set of job ids here: it would grow with N).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from bench.common import PY, WORKER, Report, connect, enqueue_noops, jobs_count

MILLION = 1_000_000


def memory(dsn: str, n: int, rep: Report) -> None:
    with connect(dsn) as conn:
        conn.execute("TRUNCATE errands._jobs")
        left = n
        while left > 0:
            enqueue_noops(conn, min(left, 100_000))
            left -= 100_000
        conn.execute("VACUUM ANALYZE errands._jobs")
    env = {**os.environ, "BENCH_RSS_EVERY": str(max(1, n // 20))}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [PY, str(WORKER), dsn, "10", "once"], capture_output=True, text=True, env=env, check=False
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"memory bench: worker exited with {proc.returncode}: {proc.stderr}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    with connect(dsn) as conn:
        left = jobs_count(conn)
    if out["ok"] != n or out["failed"] or left:
        raise RuntimeError(f"memory bench: ok={out['ok']} failed={out['failed']} left={left}")
    samples: list[tuple[int, float]] = [(int(j), float(mb)) for j, mb in out["rss"]]
    half = [s for s in samples if s[0] >= n // 2]
    (j0, m0), (j1, m1) = half[0], half[-1]
    slope = (m1 - m0) / (j1 - j0) * 100_000 if j1 > j0 else 0.0
    end = samples[-1][1]
    at_million = end + slope * (MILLION - n) / 100_000
    rep.add(
        "RSS.jobs",
        f"worker RSS after {n:,} jobs (run-once, c10, {n / seconds:,.0f} jobs/s)",
        f"{end:.1f} MB",
        "",
        {"samples": samples, "seconds": seconds},
    )
    rep.add(
        "RSS.slope",
        "  RSS growth over the second half, per 100,000 jobs",
        f"{slope:+.2f} MB",
        "",
        slope,
    )
    rep.add(
        "RSS.1M",
        "worker RSS after 1,000,000 jobs" + ("" if n >= MILLION else " (extrapolated: slope)"),
        f"{at_million:.1f} MB",
        "<= 80 MB",
        at_million,
    )

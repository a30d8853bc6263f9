"""Errands benchmark: ``make bench`` (full) / ``make bench-quick`` (< 2 minutes).

Starts a throwaway PostgreSQL cluster (pgtap.cluster.PgCluster, switched to durable
settings: fsync, synchronous_commit and full_page_writes on, data on disk rather than
tmpfs), installs errands and runs W1..W5 (see bench/README.md).  Prints a markdown
table and writes bench/results/<timestamp>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import errands  # noqa: E402
from bench.cancel import cancel_latency  # noqa: E402
from bench.common import (  # noqa: E402
    BENCH,
    FULL,
    QUICK,
    Report,
    connect,
    durable_cluster,
    log,
    machine_info,
)
from bench.flows import flows  # noqa: E402
from bench.history import history_row  # noqa: E402
from bench.idle_workers import idle_workers  # noqa: E402
from bench.memory import memory  # noqa: E402
from bench.metrics import metrics_row  # noqa: E402
from bench.metrics_db import metrics_db_row  # noqa: E402
from bench.side_by_side import (  # noqa: E402
    PEERS_FULL,
    PEERS_QUICK,
    ensure_peer_deps,
    peers,
    peers_markdown,
)
from bench.wait_latency import wait_row  # noqa: E402
from bench.workloads import (  # noqa: E402
    compile_errands,
    once_empty,
    w1,
    w2,
    w3,
    w4,
    w5,
)

# --- output ----------------------------------------------------------------------------


def markdown(info: dict[str, Any], rep: Report, mode: str) -> str:
    s = info["settings"]
    lines = [
        f"# Errands benchmark ({mode})",
        "",
        f"- date: {info['date']}",
        f"- command: `{info['command']}`",
        f"- machine: {info['nproc']} CPUs, {info['cpu']}; Python {info['python']}",
        f"- PostgreSQL: {info['postgresql']}",
        "- settings: "
        + ", ".join(f"{k}={v}" for k, v in s.items())
        + f"; data dir on {info['data_fs']}",
        "",
        "| id | measure | result | target |",
        "|---|---|---|---|",
    ]
    lines += [f"| {k} | {w} | {v} | {t} |" for k, w, v, t in rep.rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (< 2 minutes)")
    parser.add_argument(
        "--only",
        default="W1,W2,W3,W4,W5,once,idle,RSS,history,wait,cancel,flows,metrics,metrics_db",
        help="comma-separated workloads",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also run W1 c10, W2 and W3 side by side with Graphile Worker, PgQueuer and"
        " Procrastinate (W2: Graphile and PgQueuer)",
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the cluster is stopped and removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sz = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"
    only = set(args.only.split(","))
    rep = Report()
    if args.peers:
        ensure_peer_deps()  # fail early, before the cluster starts
    peer_res: dict[str, Any] = {}
    with durable_cluster() as cluster:
        dsn = cluster.dsn()
        with connect(dsn) as conn:
            errands.install(conn)
            conn.execute("SELECT errands.add_job(identifier => 'noop')")  # registers the tasks
            conn.execute("SELECT errands.add_job(identifier => 'latency', payload => '{\"t\": 0}')")
            conn.execute("TRUNCATE errands._jobs")
            info = machine_info(conn, cluster)
        print(f"settings: {info['settings']} (data dir on {info['data_fs']})", flush=True)
        compile_errands()  # every workload, not only once.empty, starts compiled
        base = 0.0
        if "once" in only:
            log("--once on an empty queue")
            once_empty(dsn, rep)
        if "W1" in only:
            log("W1 throughput")
            base = w1(dsn, sz, rep)
        if "W2" in only:
            log("W2 latency")
            w2(dsn, sz, rep)
        if "idle" in only:
            log("idle workers: 16 workers, add_job one by one at 200/s")
            idle_workers(dsn, rep, jobs=500 if args.quick else 1000, rounds=2 if args.quick else 4)
        if "W3" in only:
            log("W3 enqueue")
            w3(dsn, sz, rep)
        if "W4" in only:
            log("W4 scale")
            w4(dsn, sz, rep, rounds=3 if args.quick else 5)
        if "RSS" in only:
            log("RSS: one worker's memory over many jobs")
            memory(dsn, 200_000 if args.quick else 1_000_000, rep)
        if "W5" in only:
            log("W5 floor")
            floor = w5(dsn, sz, rep, cluster.bindir / "pgbench")
            if base:
                rep.add(
                    "W1/W5.b50",
                    "W1 c10 / pgbench 50-per-tx floor",
                    f"{base / floor[50]:.0%}",
                    ">= 45%",
                    base / floor[50],
                )
        if "history" in only:
            log("W1 by retention")
            history_row(dsn, 2 if args.quick else 4, sz.w1, rep)
        if "wait" in only:
            log("wait latency")
            wait_row(dsn, 100 if args.quick else 500, rep)
        if "cancel" in only:
            log("cancellation latency")
            cancel_latency(dsn, rep, 20 if args.quick else 100)
        if "flows" in only:
            log("flows: fan-in and chain")
            flows(dsn, rep, rounds=2 if args.quick else 3)
        if "metrics" in only:
            log("W1 with metrics on / off")
            metrics_row(dsn, 4 if args.quick else 6, sz.w1, rep)
        if "metrics_db" in only:
            log("database gauges on a big table")
            metrics_db_row(dsn, 200_000 if args.quick else 1_000_000, rep)
        if args.peers and only & {"W1", "W2", "W3"}:
            log("peers side by side")
            peer_res = peers(cluster, sz, PEERS_QUICK if args.quick else PEERS_FULL, only)
    md = markdown(info, rep, mode)
    if peer_res:
        md += peers_markdown(peer_res)
    out_dir = BENCH / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (out_dir / f"{stamp}.md").write_text(md)
    (out_dir / f"{stamp}.json").write_text(
        json.dumps({"mode": mode, "info": info, "results": rep.data, "peers": peer_res}, indent=2)
    )
    print()
    print(md)
    print(f"wrote bench/results/{stamp}.md and .json")


if __name__ == "__main__":
    main()

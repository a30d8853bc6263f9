"""W2's add call alone, per queue: where the side-by-side W2 gap lies (add or worker).

``python bench/add_cost.py [--rounds 4] [--calls 150]`` starts its own durable cluster
(as bench/run.py), installs Errands, Graphile Worker and PgQueuer there (bench/peers,
as ``--peers`` does) and times W2's enqueue statement of each queue
(``bench.side_by_side.W2_ADD``) on one connection with no worker running: back to back,
and with 10 ms idle before each call as W2 spaces them.  Blocks of ``--calls`` calls
alternate between the queues, ``--rounds`` times.  Prints p50 / p90 (ms) per queue
and spacing.  The call returns after its commit's WAL flush; its NOTIFY leaves with
the commit, so add -> start = (the add's execution and commit) + (the worker's path).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from psycopg.types.json import Json

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import errands
from bench.common import connect, durable_cluster
from bench.side_by_side import TITLES, W2_ADD, Peers, ensure_peer_deps

GAPS = (0.0, 0.010)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=150)
    args = parser.parse_args()
    node, vpy = ensure_peer_deps()
    times: dict[tuple[str, float], list[float]] = {(n, g): [] for n in W2_ADD for g in GAPS}
    with durable_cluster() as cluster:
        with connect(cluster.dsn()) as conn:
            errands.install(conn)
        peers = Peers(cluster, node, vpy)
        conns = {name: connect(peers.dsn[name]) for name in W2_ADD}
        try:
            for _ in range(args.rounds):
                for gap in GAPS:
                    for name, sql in W2_ADD.items():
                        for _ in range(args.calls):
                            if gap:
                                time.sleep(gap)
                            t0 = time.perf_counter()
                            conns[name].execute(sql, (Json({"t": time.time()}),))
                            times[name, gap].append((time.perf_counter() - t0) * 1000)
        finally:
            for conn in conns.values():
                conn.close()
    print("| queue | back to back p50 / p90 ms | 10 ms idle before p50 / p90 ms |")
    print("|---|---|---|")
    for name in W2_ADD:
        cells = []
        for gap in GAPS:
            v = sorted(times[name, gap])
            cells.append(f"{statistics.median(v):.3f} / {v[int(0.9 * (len(v) - 1))]:.3f}")
        print(f"| {TITLES[name]} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()

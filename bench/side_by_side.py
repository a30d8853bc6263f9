"""`--peers`: Errands, Graphile Worker, PgQueuer and Procrastinate side by side."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from bench.common import (
    GRAPHILE_DIR,
    PEERS_DIR,
    PEERS_REQUIREMENTS,
    PEERS_VENV,
    PY,
    WORKER,
    Sizes,
    connect,
    enqueue_noops,
    log,
    run_once_workers,
    scalar,
    w1_round,
)
from bench.workloads import (
    ERRANDS_ADD_LATENCY,
    latencies,
    percentiles,
    timed,
)
from pgtap.cluster import PgCluster

# --- peers (--peers): Graphile Worker, PgQueuer, Procrastinate side by side ---------------

W2_SYSTEMS = ["errands", "graphile", "pgqueuer"]
W2_ADD = {
    "errands": ERRANDS_ADD_LATENCY,
    "graphile": "SELECT graphile_worker.add_job('latency', %s::json)",
    # What PgQueuer's Queries.enqueue writes for one job (its statement takes asyncpg
    # arrays): the row, 'queued', due now, and its log row; the table's statement
    # trigger sends the NOTIFY.  Its payload is bytea.
    "pgqueuer": "WITH job AS (INSERT INTO pgqueuer (priority, entrypoint, payload,"
    " execute_after, status) VALUES (0, 'latency', convert_to(%s::text, 'UTF8'), now(),"
    " 'queued') RETURNING id, entrypoint, priority) INSERT INTO pgqueuer_log (job_id,"
    " status, entrypoint, priority) SELECT id, 'queued', entrypoint, priority FROM job",
}


@dataclass
class PeerSizes:
    rounds: int
    w1: int  # the same N for every queue, but Procrastinate's
    procrastinate_w1: int  # Procrastinate runs < 1,000 jobs/s: its N is capped
    procrastinate_w3: int


PEERS_QUICK = PeerSizes(3, 10_000, 300, 2_000)
PEERS_FULL = PeerSizes(3, 20_000, 1_000, 10_000)
SYSTEMS = ["errands", "graphile", "pgqueuer", "procrastinate"]
TITLES = {
    "errands": "Errands",
    "graphile": "Graphile Worker",
    "pgqueuer": "PgQueuer",
    "procrastinate": "Procrastinate",
}


def ensure_peer_deps() -> tuple[str, str]:
    """Install the peers on first use; returns (node, the peers' python)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise SystemExit(
            "error: --peers (make bench PEERS=1) needs Node.js >= 20 and npm for Graphile"
            " Worker; install them (e.g. apt-get install nodejs npm) or run without PEERS=1"
        )
    modules = GRAPHILE_DIR / "node_modules"
    stamp = modules / ".bench-installed"
    lock = GRAPHILE_DIR / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        log("installing Graphile Worker (npm ci in bench/peers/graphile)")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=GRAPHILE_DIR, check=True
        )
        stamp.touch()
    vpy = PEERS_VENV / "bin" / "python"
    if not vpy.exists():
        log("creating bench/peers/.venv")
        subprocess.run([PY, "-m", "venv", str(PEERS_VENV)], check=True)
    vstamp = PEERS_VENV / ".bench-installed"
    if not vstamp.exists() or vstamp.stat().st_mtime < PEERS_REQUIREMENTS.stat().st_mtime:
        log("installing PgQueuer and Procrastinate into bench/peers/.venv")
        subprocess.run(
            [str(vpy), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
             str(PEERS_REQUIREMENTS)],
            check=True,
        )  # fmt: skip
        vstamp.touch()
    return node, str(vpy)


@dataclass
class Proc:
    seconds: float
    out: dict[str, Any]
    max_rss_mb: float


def run_proc(cmd: list[str], what: str) -> Proc:
    """Run a process to its exit: wall time from start to exit, last JSON line, max RSS."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    _, status, _ = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stdout is not None
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} exited with {proc.returncode}: {out}")
    got = json.loads(out.strip().splitlines()[-1])
    return Proc(seconds, got, float(got.get("vmhwm_mb", 0.0)))


class Peers:
    """The four queues, each in its own database of the same cluster."""

    def __init__(self, cluster: PgCluster, node: str, vpy: str) -> None:
        self.node = node
        self.vpy = vpy
        self.dsn = {"errands": cluster.dsn()}
        with connect(cluster.dsn()) as conn:
            for name in SYSTEMS[1:]:
                conn.execute(f"CREATE DATABASE bench_{name}")
                self.dsn[name] = cluster.dsn(f"bench_{name}")
        log("installing the peers' schemas")
        subprocess.run(
            [node, str(GRAPHILE_DIR / "run.js"), "migrate", self.dsn["graphile"]], check=True
        )
        for name in ("pgqueuer", "procrastinate"):
            subprocess.run(
                [vpy, str(PEERS_DIR / f"{name}_runner.py"), "install", self.dsn[name]],
                check=True,
                stderr=subprocess.DEVNULL,
            )

    def runner(self, name: str, *args: str) -> list[str]:
        if name == "graphile":
            return [self.node, str(GRAPHILE_DIR / "run.js"), *args]
        return [self.vpy, str(PEERS_DIR / f"{name}_runner.py"), *args]

    def enqueue(self, name: str, n: int) -> float:
        """Bulk-enqueue n no-ops; seconds of the enqueue call."""
        if name in ("errands", "graphile"):
            with connect(self.dsn[name]) as conn:
                if name == "errands":
                    return timed(lambda: enqueue_noops(conn, n))
                return timed(
                    lambda: conn.execute(
                        "SELECT count(*) FROM graphile_worker.add_jobs(ARRAY(SELECT ROW('noop',"
                        " '{}'::json, NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec"
                        " FROM generate_series(1, %s::int)))",
                        (n,),
                    )
                )
        res = run_proc(self.runner(name, "enqueue", self.dsn[name], str(n)), f"{name} enqueue")
        return float(res.out["seconds"])

    def left(self, name: str) -> int:
        """Jobs not done (errands/graphile/pgqueuer delete done jobs)."""
        query = {
            "errands": "SELECT count(*) FROM errands._jobs",
            "graphile": "SELECT count(*) FROM graphile_worker._private_jobs",
            "pgqueuer": "SELECT count(*) FROM pgqueuer",
            "procrastinate": "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'",
        }[name]
        with connect(self.dsn[name]) as conn:
            return int(scalar(conn, query))

    TABLES: ClassVar[dict[str, str]] = {
        "errands": "errands._jobs",
        "graphile": "graphile_worker._private_jobs",
        "pgqueuer": "pgqueuer",
        "procrastinate": "procrastinate_jobs",
    }

    def reset(self, name: str) -> None:
        """Empty the queue (and the peers' logs of done jobs)."""
        extra = {"pgqueuer": ", pgqueuer_log", "procrastinate": " CASCADE"}.get(name, "")
        with connect(self.dsn[name]) as conn:
            conn.execute(f"TRUNCATE {self.TABLES[name]}{extra}")

    def analyze(self, name: str) -> None:
        with connect(self.dsn[name]) as conn:
            conn.execute(f"VACUUM ANALYZE {self.TABLES[name]}")

    def empty(self, name: str, concurrency: int) -> float:
        """Seconds from process start to exit of the W1 worker on an empty queue."""
        self.reset(name)
        if name == "errands":
            res = run_once_workers(self.dsn[name], concurrency)
            seconds, ok = res.seconds, res.ok
        else:
            proc = run_proc(self.runner(name, "once", self.dsn[name], str(concurrency)), name)
            seconds, ok = proc.seconds, proc.out["ok"]
        if ok:
            raise RuntimeError(f"{name} ran {ok} jobs on an empty queue")
        return seconds

    def w1(self, name: str, n: int, concurrency: int) -> Proc:
        """n no-ops enqueued in bulk, one process at `concurrency` until the queue is empty."""
        self.reset(name)
        if name == "errands":
            res = w1_round(self.dsn[name], n, concurrency)
            return Proc(res.seconds, {"ok": res.ok, "distinct": res.distinct}, res.max_rss_mb)
        self.enqueue(name, n)
        self.analyze(name)  # as w1_round does for errands
        proc = run_proc(self.runner(name, "once", self.dsn[name], str(concurrency)), name)
        left = self.left(name)
        out = proc.out
        if out["ok"] != n or out["distinct"] != n or out.get("failed") or left:
            raise RuntimeError(f"{name} W1 check failed (n={n}): {out}, {left} jobs left")
        return proc


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "all": values,
    }


def fmt_spread(s: dict[str, Any], digits: int = 0) -> str:
    f = f"{{:,.{digits}f}}"
    return f"{f.format(s['median'])} ({f.format(s['min'])}-{f.format(s['max'])})"


def peers(cluster: PgCluster, sz: Sizes, psz: PeerSizes, only: set[str]) -> dict[str, Any]:
    """Interleaved rounds of W1 c10 and W3 bulk enqueue for errands and the three peers."""
    node, vpy = ensure_peer_deps()
    p = Peers(cluster, node, vpy)
    c = 10
    n_w1 = dict.fromkeys(SYSTEMS, psz.w1) | {"procrastinate": psz.procrastinate_w1}
    n_w3 = dict.fromkeys(SYSTEMS, sz.w3_bulk) | {"procrastinate": psz.procrastinate_w3}
    w1_rates: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    w1_net: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    w1_empty: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    w1_rss: dict[str, float] = dict.fromkeys(SYSTEMS, 0.0)
    w3_rates: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    w2_lat: dict[str, list[list[float]]] = {name: [] for name in W2_SYSTEMS}
    w2_n = max(20, sz.w2 // psz.rounds)
    for r in range(psz.rounds):
        order = SYSTEMS[r % len(SYSTEMS) :] + SYSTEMS[: r % len(SYSTEMS)]
        if "W1" in only:
            for name in order:
                empty = p.empty(name, c)
                res = p.w1(name, n_w1[name], c)
                rate = n_w1[name] / res.seconds
                w1_rates[name].append(rate)
                w1_empty[name].append(empty * 1000)
                w1_net[name].append(n_w1[name] / max(res.seconds - empty, 1e-3))
                w1_rss[name] = max(w1_rss[name], res.max_rss_mb)
                log(f"peers W1 round {r + 1}: {name:<13} {rate:>9,.0f} jobs/s")
        if "W3" in only:
            for name in order:
                p.reset(name)
                s = p.enqueue(name, n_w3[name])
                w3_rates[name].append(n_w3[name] / s)
                log(f"peers W3 round {r + 1}: {name:<13} {n_w3[name] / s:>9,.0f} jobs/s")
                p.reset(name)
        if "W2" in only:  # Errands, Graphile and PgQueuer (Procrastinate: far slower)
            for name in [x for x in order if x in w2_lat]:
                if name == "errands":
                    cmd = [PY, str(WORKER), p.dsn[name], str(c), "continuous"]
                else:
                    cmd = p.runner(name, "continuous", p.dsn[name], str(c))
                w2_lat[name].append(latencies(cmd, p.dsn[name], W2_ADD[name], w2_n))
                got = percentiles(w2_lat[name][-1])
                ms = f"{got['p50']:.2f}/{got['p99']:.2f}"
                log(f"peers W2 round {r + 1}: {name:<13} p50/p99 {ms} ms")
                p.reset(name)
    out: dict[str, Any] = {"rounds": psz.rounds, "concurrency": c}
    if "W2" in only:
        out["W2"] = {
            name: {
                "n": w2_n * psz.rounds,
                "all": percentiles([x for one in rounds for x in one]),
                "p50": spread([percentiles(one)["p50"] for one in rounds]),
                "p99": spread([percentiles(one)["p99"] for one in rounds]),
            }
            for name, rounds in w2_lat.items()
        }
    if "W1" in only:
        out["W1"] = {
            name: {"n": n_w1[name], "max_rss_mb": w1_rss[name], **spread(w1_rates[name])}
            for name in SYSTEMS
        }
        ratios = [a / b for a, b in zip(w1_rates["errands"], w1_rates["graphile"], strict=True)]
        out["W1"]["ratio_errands_graphile"] = spread(ratios)
        out["W1net"] = {name: {"n": n_w1[name], **spread(w1_net[name])} for name in SYSTEMS}
        ratios = [a / b for a, b in zip(w1_net["errands"], w1_net["graphile"], strict=True)]
        out["W1net"]["ratio_errands_graphile"] = spread(ratios)
        out["W1empty"] = {name: {"n": 0, **spread(w1_empty[name])} for name in SYSTEMS}
        ratios = [a / b for a, b in zip(w1_empty["errands"], w1_empty["graphile"], strict=True)]
        out["W1empty"]["ratio_errands_graphile"] = spread(ratios)
    if "W3" in only:
        out["W3"] = {name: {"n": n_w3[name], **spread(w3_rates[name])} for name in SYSTEMS}
        ratios = [a / b for a, b in zip(w3_rates["errands"], w3_rates["graphile"], strict=True)]
        out["W3"]["ratio_errands_graphile"] = spread(ratios)
    return out


def peers_markdown(res: dict[str, Any]) -> str:
    heads = " | ".join(TITLES[name] for name in SYSTEMS)
    lines = [
        "",
        f"## Side by side (same cluster, {res['rounds']} interleaved rounds, median (min-max))",
        "",
        f"| workload | {heads} | Errands / Graphile | target |",
        "|---|" + "---|" * (len(SYSTEMS) + 2),
    ]
    rows = [
        ("W1", f"W1 jobs/s, 1 process, concurrency {res['concurrency']}", ">= 1.0 (aim 1.5)"),
        ("W1net", "  same, start-up excluded: N / (wall - empty-queue run)", ""),
        ("W1empty", "  the same worker on an empty queue, ms (lower is better)", ""),
        ("W3", "W3 bulk enqueue jobs/s", ">= 1.5"),
    ]
    for key, what, target in rows:
        if key not in res:
            continue
        cells = []
        for name in SYSTEMS:
            cell = fmt_spread(res[key][name])
            if res[key][name]["n"] != res[key]["errands"]["n"] and key != "W1empty":
                cell += f" (N={res[key][name]['n']:,})"
            cells.append(cell)
        ratio = fmt_spread(res[key]["ratio_errands_graphile"], 2)
        n = res[key]["errands"]["n"]
        what = f"{what}, N={n:,}" if n else what
        lines.append(f"| {what} | {' | '.join(cells)} | {ratio} | {target} |")
    if "W2" in res:
        w2 = res["W2"]
        for q in ("p50", "p99"):
            cells = [fmt_spread(w2[name][q], 2) + " ms" if name in w2 else "-" for name in SYSTEMS]
            ratio = w2["errands"][q]["median"] / w2["graphile"][q]["median"]
            best = min(w2[name][q]["median"] for name in W2_SYSTEMS[1:])
            lines.append(
                f"| W2 latency add -> start, {q} of each round ({w2['errands']['n']:,}"
                f" jobs, 10 ms apart); Errands / best peer {w2['errands'][q]['median'] / best:.2f}"
                f" | {' | '.join(cells)} | {ratio:.2f} (medians) |"
                f" < every peer{', aim <= 2 ms' if q == 'p50' else ''} |"
            )
    if "W1" in res:
        rss = " | ".join(f"{res['W1'][name]['max_rss_mb']:.0f} MB" for name in SYSTEMS)
        lines.append(f"| W1 worker max RSS | {rss} |  |  |")
    lines += [
        "",
        "W1: jobs/s = N / (worker process start .. exit), the queue filled by one bulk call"
        " beforehand; every job checked done exactly once; the start-up-excluded row subtracts"
        " the same round's empty-queue run, as Graphile's perfTest does.  Procrastinate's N"
        " is capped (it runs well under 1,000 jobs/s).  W3: one bulk call; Errands and Graphile"
        " `add_jobs` from SQL (generate_series), PgQueuer `Queries.enqueue` with lists,"
        " Procrastinate `Task.batch_defer_async` (the call alone).  W2: an idle"
        " continuous worker per queue (Procrastinate not run), one add per 10 ms from SQL"
        " (PgQueuer: the INSERT its enqueue makes), start - payload time.  Configurations:"
        " bench/README.md.  Ratios are per round (same round, same machine state).",
    ]
    return "\n".join(lines) + "\n"

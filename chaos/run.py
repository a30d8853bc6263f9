"""Chaos test: many jobs, workers SIGKILLed, PostgreSQL restarted, connections cut.

``make chaos`` (``python chaos/run.py``) runs the full size; ``--help`` lists the
knobs.  ``tests_py/test_chaos.py`` runs a short version inside ``make test``.

What happens:

* a throwaway PostgreSQL cluster (pgtap.cluster.PgCluster, because it gets
  restarted) with errands installed and the tables ``chaos_added`` (every job the
  harness added, written in the same transaction as ``add_jobs``) and
  ``chaos_results`` (one row per finished execution, see chaos/tasks.py);
* ``--workers`` worker processes (chaos/worker.py) at ``--concurrency``; the jobs
  are plain (60 %), keyed (20 %, unique ``job_key``) and in serial named queues
  (20 %, ``--queues`` queues), added in chunks while the workers run, keeping a
  backlog of about two chunks;
* every ``--kill-interval`` seconds (random in the range) one worker is killed
  with SIGKILL and started again under a new worker id; the jobs it had locked
  at that moment are recorded with their attempt number;
* PostgreSQL is restarted ``--pg-restarts`` times (fast shutdown, ``--pg-down``
  seconds down) at evenly spread points of progress;
* every ``--terminate-interval`` seconds ``--terminate-count`` random client
  connections of the workers are terminated with ``pg_terminate_backend``;
* with ``--netns`` (default ``auto``: when root and ``ip netns`` works), the last
  two workers run as separate hosts in network namespaces joined to PostgreSQL by
  veth links; halfway through, one host's link is cut for longer than the
  heartbeat timeout and then restored.

Verdict (exit code 1 on any failure): every job added ran to completion at least
once; no job remains; no two executions of a serial queue overlapped in time;
every job that ran more than once is explained by a killed worker, a dead
connection or the cut link (counted per cause); every job a killed worker had
locked ran again (the rescue delay, SIGKILL to the next attempt's start, is
reported: max and p50, target max <= 5 s, p50 <= 2 s); with the network part:
the cut host's jobs ran again elsewhere and its late completions were refused
(logged as a lost lock by that worker).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import errands  # noqa: E402
from chaos.tasks import RESULTS_TABLE  # noqa: E402
from pgtap.cluster import PgCluster  # noqa: E402

WORKER_SCRIPT = Path(__file__).resolve().parent / "worker.py"
DB = "chaos"

ADDED_TABLE = """
CREATE TABLE IF NOT EXISTS chaos_added (
    job_id bigint PRIMARY KEY,
    chunk int NOT NULL,
    kind text NOT NULL,
    queue_name text
)
"""

# One chunk: jobs chunk*size+1 .. chunk*size+size; 60 % plain, 20 % keyed, 20 % in
# serial queues.  add_jobs and the record of what was added commit together.
ADD_CHUNK = """
WITH specs AS (
    SELECT i,
           CASE WHEN i %% 10 < 6 THEN 'plain' WHEN i %% 10 < 8 THEN 'keyed'
                ELSE 'serial' END AS kind
    FROM generate_series(%(first)s::int, %(last)s::int) AS i
), added AS (
    SELECT a.id, a.queue_name, a.key
    FROM errands.add_jobs(
        (SELECT array_agg(ROW(
             'chaos_job',
             json_build_object('max_ms', %(max_ms)s::int, 'n', i),
             CASE WHEN kind = 'serial' THEN 'chaos-q' || ((i / 10) %% %(queues)s::int) END,
             NULL, NULL,
             CASE WHEN kind = 'keyed' THEN 'chaos-key-' || i END,
             NULL, NULL)::errands.job_spec ORDER BY i)
         FROM specs)) AS a
)
INSERT INTO chaos_added (job_id, chunk, kind, queue_name)
SELECT id, %(chunk)s::int,
       CASE WHEN queue_name IS NOT NULL THEN 'serial' WHEN key IS NOT NULL THEN 'keyed'
            ELSE 'plain' END,
       queue_name
FROM added
"""

LOCK_LOST_RE = re.compile(r"#(\d+) \(attempt (\d+)/\d+\): the job's lock was lost")


@dataclass
class Options:
    jobs: int = 50_000
    workers: int = 4
    concurrency: int = 8
    kill_interval: tuple[float, float] = (2.0, 3.0)
    max_kills: int | None = None
    pg_restarts: int = 2
    pg_down: float = 1.0
    terminate_interval: float = 5.0
    terminate_count: int = 2
    queues: int = 50
    max_ms: int = 20
    chunk: int = 2000
    netns: str = "auto"  # auto | on | off
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 8.0
    timeout: float = 900.0
    seed: int | None = None
    keep_logs: bool = False
    timing_checks: bool = True
    extra_sql: str | None = None
    """A SQL file run after installing errands (to try a schema change under chaos)."""
    """Whether the rescue delay targets count for the verdict (not in make test)."""


@dataclass
class Slot:
    index: int
    netns: str | None = None
    dsn: str = ""
    gen: int = 0
    worker_id: str = ""
    proc: subprocess.Popen[str] | None = None
    started_at: float = 0.0
    log: TextIO | None = None
    protected: bool = False  # not killed (the cut host)
    ready: bool = False

    def is_ready(self, logdir: Path) -> bool:
        """Whether this generation printed ``ready`` (it listens and is registered)."""
        if not self.ready:
            text = (logdir / f"worker-{self.index}.log").read_text(errors="replace")
            self.ready = f"ready {self.worker_id}\n" in text
        return self.ready


@dataclass
class Kill:
    at: float
    worker_id: str
    locked: dict[int, int]  # job id -> attempt at the kill
    unlocked_after: float | None = None  # seconds until no job was locked by it


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.lines.append(text)
        print(text, flush=True)

    def check(self, ok: bool, text: str) -> None:
        self.say(("PASS  " if ok else "FAIL  ") + text)
        if not ok:
            self.failures.append(text)


# --- network namespaces ------------------------------------------------------------


class NetNs:
    """Two network namespaces, each joined to the host by a veth pair."""

    def __init__(self) -> None:
        tag = os.getpid() % 10000
        third = 200 + os.getpid() % 50
        self.hosts: list[tuple[str, str, str, str]] = []  # (ns, host veth, host ip, ns ip)
        for i in (1, 2):
            net = f"10.{third}.{i}"
            self.hosts.append((f"errands-chaos-{tag}-{i}", f"ech{tag}h{i}", f"{net}.1", f"{net}.2"))
        self.created: list[str] = []

    @staticmethod
    def available() -> str | None:
        """None when namespaces can be used, else why not."""
        if os.geteuid() != 0:
            return "not root"
        if shutil.which("ip") is None:
            return "`ip` (iproute2) not installed"
        probe = f"errands-chaos-probe-{os.getpid()}"
        try:
            subprocess.run(["ip", "netns", "add", probe], check=True, capture_output=True)
            subprocess.run(["ip", "netns", "del", probe], check=True, capture_output=True)
        except subprocess.CalledProcessError as exc:
            return f"`ip netns add` failed: {exc.stderr.decode(errors='replace').strip()}"
        return None

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def setup(self) -> None:
        for ns, veth, host_ip, ns_ip in self.hosts:
            self._ip("netns", "add", ns)
            self.created.append(ns)
            self._ip("link", "add", veth, "type", "veth", "peer", "name", veth + "n")
            self._ip("link", "set", veth + "n", "netns", ns)
            self._ip("addr", "add", f"{host_ip}/24", "dev", veth)
            self._ip("link", "set", veth, "up")
            self._ip("netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/24", "dev", veth + "n")
            self._ip("netns", "exec", ns, "ip", "link", "set", veth + "n", "up")
            self._ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def link(self, index: int, up: bool) -> None:
        self._ip("link", "set", self.hosts[index][1], "up" if up else "down")

    def cleanup(self) -> None:
        for ns, veth, _, _ in self.hosts:
            with contextlib.suppress(Exception):
                subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=30)
            if ns in self.created:
                with contextlib.suppress(Exception):
                    subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


# --- the harness -------------------------------------------------------------------


class Chaos:
    def __init__(self, opts: Options, report: Report) -> None:
        self.opts = opts
        self.report = report
        self.rng = random.Random(opts.seed)
        self.logdir = Path(tempfile.mkdtemp(prefix="errands-chaos-"))
        self.cluster: PgCluster | None = None
        self.netns: NetNs | None = None
        self.slots: list[Slot] = []
        self.conn: psycopg.Connection[Any] | None = None
        self.kills: list[Kill] = []
        self.unlock_pending: list[Kill] = []
        self.restarts: list[tuple[float, float]] = []  # (down at, up at)
        self.terminated: list[tuple[float, str]] = []  # (at, worker id)
        self.conn_events: list[tuple[float, str]] = []  # (at, worker id): connections cut
        # (at, worker id, exit code, whether it had started)
        self.unexpected_exits: list[tuple[float, str, int, bool]] = []
        self.all_worker_ids: list[str] = []
        self.cut: dict[str, Any] | None = None
        self.added = 0
        self.chunks = 0
        self.started = 0.0

    # -- database access that survives restarts --

    def dsn(self) -> str:
        assert self.cluster is not None
        return self.cluster.dsn(DB)

    def sql(self, query: str, params: Any = None, *, fetch: bool = True) -> list[Any]:
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = psycopg.connect(
                        self.dsn(), autocommit=True, application_name="chaos-harness"
                    )
                cur = self.conn.execute(query, params)
                return cur.fetchall() if fetch and cur.description else []
            except psycopg.OperationalError:
                if self.conn is not None:
                    with contextlib.suppress(Exception):
                        self.conn.close()
                    self.conn = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # -- setup --

    def setup(self) -> None:
        opts = self.opts
        reason: str | None = None
        if opts.netns != "off":
            reason = NetNs.available()
            if reason is None and opts.workers < 3:
                reason = "fewer than 3 workers"
            if reason is not None and opts.netns == "on":
                raise SystemExit(f"--netns on: namespaces not available: {reason}")
        if opts.netns != "off" and reason is None:
            self.netns = NetNs()
            self.netns.setup()
            hosts = ", ".join(f"{h[0]} ({h[3]} -> {h[2]})" for h in self.netns.hosts)
            self.report.say(f"network namespaces: {hosts}")
        else:
            self.report.say(
                "SKIP  network partition part: "
                + ("--netns off" if opts.netns == "off" else f"namespaces not available ({reason})")
            )
        extra = [h[2] for h in self.netns.hosts] if self.netns else []
        self.cluster = PgCluster(extra_listen_addresses=extra).start()
        if self.netns is not None:
            for _, _, host_ip, _ in self.netns.hosts:
                self.cluster.allow_network(host_ip.rsplit(".", 1)[0] + ".0/24")
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {DB}")
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            errands.install(conn)
            if opts.extra_sql:
                conn.execute(Path(opts.extra_sql).read_text())
                self.report.say(f"applied --extra-sql {opts.extra_sql}")
            conn.execute(RESULTS_TABLE)
            conn.execute(ADDED_TABLE)
        for i in range(opts.workers):
            slot = Slot(i)
            port = self.cluster.port
            if self.netns is not None and i >= opts.workers - 2:
                ns, _, host_ip, _ = self.netns.hosts[i - (opts.workers - 2)]
                slot.netns = ns
                slot.dsn = f"postgresql://postgres@{host_ip}:{port}/{DB}"
            else:
                slot.dsn = self.dsn()
            self.slots.append(slot)

    def start_worker(self, slot: Slot) -> None:
        slot.gen += 1
        slot.ready = False
        slot.worker_id = f"chaos-w{slot.index}-g{slot.gen}"
        self.all_worker_ids.append(slot.worker_id)
        dsn = f"{slot.dsn}?application_name={slot.worker_id}"
        cmd = [
            sys.executable, str(WORKER_SCRIPT), dsn, slot.worker_id,
            "--concurrency", str(self.opts.concurrency), "--poll-interval", "1.0",
            "--heartbeat-interval", str(self.opts.heartbeat_interval),
            "--heartbeat-timeout", str(self.opts.heartbeat_timeout),
            "--starts", str(self.logdir / f"starts-{slot.worker_id}.txt"),
        ]  # fmt: skip
        if slot.netns is not None:
            cmd = ["ip", "netns", "exec", slot.netns, *cmd]
        if slot.log is None:
            slot.log = open(self.logdir / f"worker-{slot.index}.log", "a")  # noqa: SIM115
        slot.log.write(f"=== {time.time():.3f} starting {slot.worker_id}\n")
        slot.log.flush()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        slot.proc = subprocess.Popen(
            cmd, stdout=slot.log, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT
        )
        slot.started_at = time.monotonic()

    # -- chaos actions --

    def locked_by(self, worker_id: str) -> dict[int, int]:
        rows = self.sql("SELECT id, attempts FROM errands._jobs WHERE locked_by = %s", [worker_id])
        return {r[0]: r[1] for r in rows}

    def kill_one(self) -> None:
        candidates = [
            s for s in self.slots
            if not s.protected and s.proc is not None and s.proc.poll() is None
            and s.is_ready(self.logdir)
        ]  # fmt: skip
        if not candidates:
            return
        # Prefer a worker with jobs locked (a busy worker is the interesting case).
        busy = {
            r[0] for r in self.sql(
                "SELECT DISTINCT locked_by FROM errands._jobs WHERE locked_at IS NOT NULL"
            )
        }  # fmt: skip
        slot = self.rng.choice([s for s in candidates if s.worker_id in busy] or candidates)
        assert slot.proc is not None
        at = time.time()
        slot.proc.send_signal(signal.SIGKILL)
        slot.proc.wait()
        locked = self.locked_by(slot.worker_id)
        self.kills.append(Kill(at, slot.worker_id, locked))
        if locked:
            self.unlock_pending.append(self.kills[-1])
        assert slot.log is not None
        slot.log.write(f"=== {at:.3f} SIGKILL {slot.worker_id} ({len(locked)} jobs locked)\n")
        slot.log.flush()
        self.start_worker(slot)

    def poll_unlocks(self) -> None:
        """When did the killed workers' jobs stop being locked by them (rescued)?"""
        for kill in list(self.unlock_pending):
            if not self.sql(
                "SELECT 1 FROM errands._jobs WHERE locked_by = %s LIMIT 1", [kill.worker_id]
            ):
                kill.unlocked_after = time.time() - kill.at
                self.unlock_pending.remove(kill)

    def restart_pg(self) -> None:
        assert self.cluster is not None
        down = time.time()
        for slot in self.slots:
            self.conn_events.append((down, slot.worker_id))
        self.cluster.restart(self.opts.pg_down)
        self.restarts.append((down, time.time()))
        print(f"  [{self.elapsed():6.1f}s] PostgreSQL restarted", flush=True)

    def terminate_some(self) -> None:
        rows = self.sql(
            "SELECT pid, application_name FROM pg_stat_activity "
            "WHERE datname = %s AND application_name LIKE 'chaos-w%%' AND pid <> pg_backend_pid()",
            [DB],
        )
        self.rng.shuffle(rows)
        for pid, app in rows[: self.opts.terminate_count]:
            self.sql("SELECT pg_terminate_backend(%s)", [pid])
            self.terminated.append((time.time(), app))
            self.conn_events.append((time.time(), app))

    def add_chunk(self) -> None:
        size = min(self.opts.chunk, self.opts.jobs - self.added)
        first = self.added + 1
        params = {
            "first": first, "last": first + size - 1, "chunk": self.chunks,
            "max_ms": self.opts.max_ms, "queues": self.opts.queues,
        }  # fmt: skip
        # When the connection dies the commit may or may not have happened: look.
        with contextlib.suppress(psycopg.OperationalError):
            self.sql(ADD_CHUNK, params, fetch=False)
        if not self.sql("SELECT 1 FROM chaos_added WHERE chunk = %s LIMIT 1", [self.chunks]):
            return  # not added: try again on the next tick
        self.added += size
        self.chunks += 1

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # -- the run --

    def run(self) -> None:
        opts = self.opts
        for slot in self.slots:
            self.start_worker(slot)
        deadline = time.monotonic() + 120
        while not all(s.is_ready(self.logdir) for s in self.slots):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not start; see {self.logdir}")
            time.sleep(0.1)
        self.started = time.monotonic()
        restart_points = [(k + 1) / (opts.pg_restarts + 1) for k in range(opts.pg_restarts)]
        cut_point = 0.5 if self.netns is not None else None
        if cut_point is not None and opts.pg_restarts == 2:
            restart_points = [0.25, 0.75]
        next_kill = time.monotonic() + self.rng.uniform(*opts.kill_interval)
        next_terminate = time.monotonic() + (opts.terminate_interval or 1e9)
        last_progress = 0.0
        while True:
            now = time.monotonic()
            if now - self.started > opts.timeout:
                self.report.say(f"timeout: the run took longer than {opts.timeout:.0f} s")
                break
            remaining = self.sql("SELECT count(*) FROM errands._jobs")[0][0]
            if self.added < opts.jobs and remaining < 2 * opts.chunk:
                self.add_chunk()
                continue
            progress = (self.added - remaining) / opts.jobs
            if progress - last_progress >= 0.1:
                last_progress = progress
                print(
                    f"  [{self.elapsed():6.1f}s] {progress:4.0%} done, {len(self.kills)} kills, "
                    f"{len(self.restarts)} restarts, {len(self.terminated)} terminated",
                    flush=True,
                )
            cut_busy = self.cut is not None and "restored" not in self.cut
            if restart_points and progress >= restart_points[0] and not cut_busy:
                restart_points.pop(0)
                self.restart_pg()
                continue
            if cut_point is not None and progress >= cut_point and self.cut is None:
                self.cut_link()
            if self.cut is not None and "restored" not in self.cut and now >= self.cut["until"]:
                self.restore_link()
            for slot in self.slots:
                if slot.proc is not None and slot.proc.poll() is not None:
                    code = slot.proc.returncode
                    ready = slot.is_ready(self.logdir)
                    self.unexpected_exits.append((time.time(), slot.worker_id, code, ready))
                    print(f"  {slot.worker_id} exited with code {code}; restarting", flush=True)
                    self.start_worker(slot)
            kills_left = opts.max_kills is None or len(self.kills) < opts.max_kills
            if kills_left and now >= next_kill:
                self.kill_one()
                next_kill = time.monotonic() + self.rng.uniform(*opts.kill_interval)
            self.poll_unlocks()
            if opts.terminate_interval and now >= next_terminate:
                self.terminate_some()
                next_terminate = time.monotonic() + opts.terminate_interval
            done = self.added >= opts.jobs and remaining == 0
            cut_settled = self.cut is None or (
                "restored" in self.cut and time.time() > self.cut["restored"] + 15
            )
            if done and cut_settled and not restart_points:
                break
            time.sleep(0.1)
        self.total_time = self.elapsed()

    def cut_link(self) -> None:
        """Cut the last worker's link, once it runs jobs (it is no longer killed)."""
        assert self.netns is not None
        slot = self.slots[-1]
        slot.protected = True
        if not slot.is_ready(self.logdir) or not self.locked_by(slot.worker_id):
            return  # next tick
        at = time.time()
        self.netns.link(1, up=False)
        locked = self.locked_by(slot.worker_id)
        cut_for = self.opts.heartbeat_timeout + 5.0
        self.cut = {"at": at, "worker_id": slot.worker_id, "locked": locked,
                    "until": time.monotonic() + cut_for, "slot": slot}  # fmt: skip
        print(
            f"  [{self.elapsed():6.1f}s] cut the link of {slot.worker_id} ({slot.netns}) for "
            f"{cut_for:.0f} s; {len(locked)} jobs locked",
            flush=True,
        )

    def restore_link(self) -> None:
        assert self.netns is not None and self.cut is not None
        self.netns.link(1, up=True)
        self.cut["restored"] = time.time()
        print(f"  [{self.elapsed():6.1f}s] link restored", flush=True)

    def stop_workers(self) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM)
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                slot.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                slot.proc.kill()
                slot.proc.wait()
            if slot.log is not None:
                slot.log.close()
                slot.log = None

    def cleanup(self) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.kill()
                slot.proc.wait()
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        if self.cluster is not None:
            self.cluster.stop()
        if self.netns is not None:
            self.netns.cleanup()

    # -- the verdict --

    def worker_logs(self) -> dict[str, list[str]]:
        """Log lines per worker id (a slot's log holds its generations in turn)."""
        lines: dict[str, list[str]] = defaultdict(list)
        for path in sorted(self.logdir.glob("worker-*.log")):
            current = ""
            for line in path.read_text(errors="replace").splitlines():
                m = re.match(r"=== [\d.]+ starting (\S+)", line)
                if m:
                    current = m.group(1)
                lines[current].append(line)
        return lines

    def verdict(self) -> None:
        rep = self.report
        opts = self.opts
        rows = self.sql(
            "SELECT job_id, attempt, worker_id, queue_name, started, ended, prev_error "
            "FROM chaos_results ORDER BY id"
        )
        added = {r[0]: r[1] for r in self.sql("SELECT job_id, kind FROM chaos_added")}
        remaining = self.sql("SELECT count(*) FROM errands._jobs")[0][0]
        by_job: dict[int, list[Any]] = defaultdict(list)
        for r in rows:
            by_job[r[0]].append(r)
        kinds = Counter(added.values())
        rep.say("")
        rep.say("=== chaos report ===")
        rep.say(
            f"jobs added: {len(added)} ({kinds['plain']} plain, {kinds['keyed']} keyed, "
            f"{kinds['serial']} in {opts.queues} serial queues); workers: {opts.workers} x "
            f"concurrency {opts.concurrency}"
        )
        rep.say(
            f"chaos: {len(self.kills)} SIGKILLs, {len(self.restarts)} PostgreSQL restarts, "
            f"{len(self.terminated)} connections terminated from SQL"
            + (", 1 link cut" if self.cut else "")
        )
        rep.say(f"total time: {self.total_time:.1f} s; executions recorded: {len(rows)}")
        missing = [j for j in added if j not in by_job]
        rep.check(
            len(added) == opts.jobs and not missing,
            f"every job added ran to completion at least once ({len(added) - len(missing)}"
            f"/{len(added)} of {opts.jobs} planned"
            + (f"; missing e.g. {missing[:5]}" if missing else "")
            + ")",
        )
        strangers = [j for j in by_job if j not in added]
        rep.check(not strangers, f"no execution of a job that was not added ({len(strangers)})")
        rep.check(remaining == 0, f"no job remains in errands._jobs ({remaining})")

        # Serial queues: executions sorted by start must not overlap.
        overlaps: list[str] = []
        per_queue: dict[str, list[Any]] = defaultdict(list)
        for r in rows:
            if r[3] is not None:
                per_queue[r[3]].append(r)
        for queue, runs in per_queue.items():
            runs.sort(key=lambda r: r[4])
            prev = None
            for r in runs:
                if prev is not None and r[4] < prev[5]:
                    overlaps.append(
                        f"{queue}: job {prev[0]} (attempt {prev[1]}, {prev[2]}) "
                        f"{prev[4]:.3f}-{prev[5]:.3f} and job {r[0]} (attempt {r[1]}, {r[2]}) "
                        f"{r[4]:.3f}-{r[5]:.3f}"
                    )
                if prev is None or r[5] > prev[5]:
                    prev = r
        serial_runs = sum(len(v) for v in per_queue.values())
        rep.check(
            not overlaps,
            f"no two executions of a serial queue overlapped ({serial_runs} executions in "
            f"{len(per_queue)} queues; {len(overlaps)} overlaps)",
        )
        for line in overlaps[:10]:
            rep.say("      " + line)

        # Jobs that ran more than once (started more than once), and why.
        logs = self.worker_logs()
        starts = self.read_starts()
        causes: Counter[str] = Counter()
        unexplained: list[str] = []
        rerun_jobs = 0
        next_error = {(r[0], r[1]): r[6] for r in rows}  # (job, attempt) -> previous error
        for job_id, tries in starts.items():
            if len(tries) < 2:
                continue
            rerun_jobs += 1
            tries.sort(key=lambda t: t[2])
            for (attempt, worker, at), nxt in itertools.pairwise(tries):
                cause = self.cause(worker, at, nxt[2])
                causes[cause] += 1
                if cause == "unexplained":
                    unexplained.append(
                        f"job {job_id}: attempt {attempt} by {worker} at {at:.3f}, attempt "
                        f"{nxt[0]} by {nxt[1]} at {nxt[2]:.3f} after "
                        f"{next_error.get((job_id, nxt[0]))!r}"
                    )
        multi_complete = sum(1 for runs in by_job.values() if len(runs) > 1)
        never_started = [j for j in by_job if j not in starts]
        rep.say(
            f"jobs started more than once: {rerun_jobs} ({multi_complete} ran to completion "
            f"more than once); why the earlier tries did not count: "
            + (", ".join(f"{c} {n}" for c, n in causes.most_common()) or "none")
        )
        rep.check(
            not unexplained and not never_started,
            f"every rerun follows a SIGKILL, a dead connection or the cut link of the worker "
            f"that ran the earlier try ({len(unexplained)} unexplained"
            + (f", {len(never_started)} executions missing from the start logs" if never_started
               else "") + ")",
        )  # fmt: skip
        for line in unexplained[:10]:
            rep.say("      " + line)

        # Rescue delays after SIGKILL: until the jobs are unlocked (polled every
        # ~0.1 s by this harness) and until their next attempt starts. A kill within
        # a heartbeat timeout of a PostgreSQL restart is judged apart: the restart
        # drops every advisory lock, so rescue_workers cannot tell the killed worker
        # from a live one still reconnecting and waits for the heartbeat timeout
        # (errands.rescue_workers); such kills must be rescued within that timeout + 5 s.
        hb = self.opts.heartbeat_timeout

        def near_restart(kill: Kill) -> bool:
            return any(kill.at - hb <= up and down <= kill.at + hb for down, up in self.restarts)

        not_rerun: list[int] = []
        delays: dict[bool, list[float]] = {False: [], True: []}
        for kill in self.kills:
            for job_id, attempt in kill.locked.items():
                later = [t[2] for t in starts.get(job_id, []) if t[0] > attempt]
                if later:
                    delays[near_restart(kill)].append(min(later) - kill.at)
                elif not any(r[1] == attempt and r[5] < kill.at for r in by_job.get(job_id, [])):
                    not_rerun.append(job_id)
        locked_total = sum(len(k.locked) for k in self.kills)
        rep.check(
            not not_rerun,
            f"every job a killed worker had locked ran again ({locked_total} jobs in "
            f"{len(self.kills)} kills; not rerun: {not_rerun[:10]})",
        )
        unlocks = [k.unlocked_after for k in self.kills if k.unlocked_after is not None]
        if unlocks:
            rep.say(
                f"rescue (jobs unlocked) after SIGKILL: max {max(unlocks):.2f} s, p50 "
                f"{statistics.median(unlocks):.2f} s over {len(unlocks)} kills with jobs locked"
            )
        for kill in self.kills:
            if kill.unlocked_after is not None and kill.unlocked_after > 5.0:
                rep.say(
                    f"      slow: {kill.worker_id} unlocked after {kill.unlocked_after:.2f} s"
                    + (" (within a heartbeat timeout of a PostgreSQL restart)"
                       if near_restart(kill) else "")
                )  # fmt: skip
        plain, restart = delays[False], delays[True]
        if plain:
            p50 = statistics.median(plain)
            rep.check(
                (max(plain) <= 5.0 and p50 <= 2.0) or not opts.timing_checks,
                f"rescue delay SIGKILL -> next attempt's start: max {max(plain):.2f} s, "
                f"p50 {p50:.2f} s, min {min(plain):.2f} s over {len(plain)} jobs "
                "(target max <= 5 s, p50 <= 2 s"
                + ("" if opts.timing_checks else "; reported only")
                + ")",
            )
        else:
            rep.say("rescue delay: no job was locked by a killed worker at the kill")
        if restart:
            rep.check(
                max(restart) <= hb + 5.0 or not opts.timing_checks,
                f"rescue delay of kills within {hb:.0f} s of a PostgreSQL restart: max "
                f"{max(restart):.2f} s, p50 {statistics.median(restart):.2f} s over "
                f"{len(restart)} jobs (target max <= heartbeat timeout + 5 s = {hb + 5:.0f} s"
                + ("" if opts.timing_checks else "; reported only")
                + ")",
            )

        crashes = [
            f"{w}: {ln}" for w, lines in logs.items() for ln in lines
            if "crashed" in ln or "never retrieved" in ln or "Exception in callback" in ln
        ]  # fmt: skip
        # A worker whose connection is cut while it starts (PostgreSQL restarting,
        # pg_terminate_backend) exits with an error before it is ready; its
        # supervisor, this harness, starts it again: reported, not a failure.
        at_start = [
            e for e in self.unexpected_exits
            if not e[3] and any(
                word in ln for ln in logs.get(e[1], [])
                for word in ("OperationalError", "AdminShutdown")
            )
        ]  # fmt: skip
        exits = [
            f"{w} exited with code {code}" + ("" if ready else " before it was ready")
            for at, w, code, ready in self.unexpected_exits
            if (at, w, code, ready) not in at_start
        ]
        if at_start:
            rep.say(
                f"{len(at_start)} worker(s) exited (code {at_start[0][2]}) before they were ready: "
                "a connection cut during start-up (restart or pg_terminate_backend) is not "
                "retried by Worker.start; started again"
            )
        rep.check(
            not exits and not crashes,
            f"no running worker exited or crashed by itself ({len(exits)} exits, "
            f"{len(crashes)} crash lines)",
        )
        for line in (exits + crashes)[:10]:
            rep.say("      " + line)
        lost = sum(1 for lines in logs.values() for ln in lines if LOCK_LOST_RE.search(ln))
        warnings = sum(1 for lines in logs.values() for ln in lines if " WARNING " in ln)
        rep.say(f"worker logs: {warnings} warnings, {lost} refused (lock lost) outcomes")
        if self.cut is not None:
            self.verdict_cut(by_job, starts, logs)

    def read_starts(self) -> dict[int, list[tuple[int, str, float]]]:
        """job id -> [(attempt, worker id, start time)] from the workers' start logs."""
        starts: dict[int, list[tuple[int, str, float]]] = defaultdict(list)
        for path in self.logdir.glob("starts-*.txt"):
            worker = path.stem.removeprefix("starts-")
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 3:
                    starts[int(parts[0])].append((int(parts[1]), worker, float(parts[2])))
        return starts

    def cause(self, worker: str, started: float, next_started: float) -> str:
        """Why a try of ``worker`` begun at ``started`` was followed by another try
        at ``next_started``: the first event that hit that worker in between (a
        connection cut up to 10 s before the start counts: a pooled connection may
        be found dead only when the task uses it, if nothing hit it after the start)."""
        events: list[tuple[float, str]] = []
        events += [
            (k.at, "worker SIGKILLed")
            for k in self.kills
            if k.worker_id == worker and started <= k.at <= next_started
        ]
        events += [
            (at, "worker's connection cut")
            for at, w in self.conn_events
            if w == worker and started - 10 <= at <= next_started
        ]
        cut = self.cut
        if cut is not None and cut["worker_id"] == worker:
            events += [(cut["at"], "link cut")] if started - 10 <= cut["at"] <= next_started else []
        after = [e for e in events if e[0] >= started]
        if after:
            return min(after)[1]
        return max(events)[1] if events else "unexplained"

    def verdict_cut(
        self,
        by_job: dict[int, list[Any]],
        starts: dict[int, list[tuple[int, str, float]]],
        logs: dict[str, list[str]],
    ) -> None:
        rep = self.report
        assert self.cut is not None
        cut_id: str = self.cut["worker_id"]
        locked: dict[int, int] = self.cut["locked"]
        rerun = {
            j for j, attempt in locked.items() if any(t[0] > attempt for t in starts.get(j, []))
        }  # fmt: skip
        rerun_by = Counter(
            min((t for t in starts[j] if t[0] > locked[j]), key=lambda t: t[2])[1] for j in rerun
        )
        delays = [min(t[2] for t in starts[j] if t[0] > locked[j]) - self.cut["at"] for j in rerun]
        refused = {int(m.group(1)) for ln in logs.get(cut_id, []) if (m := LOCK_LOST_RE.search(ln))}
        completed_late = {
            j for j in locked
            if any(r[2] == cut_id and r[1] == locked[j] for r in by_job.get(j, []))
        }  # fmt: skip
        not_logged = completed_late - refused
        rep.say(
            f"link cut: {cut_id} cut off for {self.cut['restored'] - self.cut['at']:.1f} s "
            f"(heartbeat timeout {self.opts.heartbeat_timeout:.0f} s) "
            f"with {len(locked)} jobs locked"
        )
        rep.check(
            bool(locked) and rerun == set(locked),
            f"the cut host's jobs were rescued and ran again ({len(rerun)}/{len(locked)}; by "
            + ", ".join(f"{w} {n}" for w, n in rerun_by.most_common())
            + ")"
            + (
                f"; rescue delay max {max(delays):.2f} s, p50 {statistics.median(delays):.2f} s"
                if delays
                else ""
            ),
        )
        rep.check(
            completed_late <= refused,
            f"its late completions were refused by SQL and logged ({len(completed_late)} jobs it "
            f"finished after the cut, {len(completed_late & refused)} logged as lock lost"
            + (f"; not logged: {sorted(completed_late - refused)[:10]}" if not_logged else "")
            + ")",
        )


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = Options()
    p.add_argument("--jobs", type=int, default=d.jobs)
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--concurrency", type=int, default=d.concurrency)
    p.add_argument("--kill-interval", type=float, nargs=2, default=d.kill_interval,
                   metavar=("MIN", "MAX"))  # fmt: skip
    p.add_argument("--max-kills", type=int, default=None)
    p.add_argument("--pg-restarts", type=int, default=d.pg_restarts)
    p.add_argument("--pg-down", type=float, default=d.pg_down, help="seconds down per restart")
    p.add_argument("--terminate-interval", type=float, default=d.terminate_interval,
                   help="seconds between pg_terminate_backend rounds (0: none)")  # fmt: skip
    p.add_argument("--terminate-count", type=int, default=d.terminate_count)
    p.add_argument("--queues", type=int, default=d.queues)
    p.add_argument("--max-ms", type=int, default=d.max_ms, help="max task sleep")
    p.add_argument("--chunk", type=int, default=d.chunk)
    p.add_argument("--netns", choices=("auto", "on", "off"), default=d.netns)
    p.add_argument("--heartbeat-interval", type=float, default=d.heartbeat_interval)
    p.add_argument("--heartbeat-timeout", type=float, default=d.heartbeat_timeout)
    p.add_argument("--timeout", type=float, default=d.timeout, help="give up after (s)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep-logs", action="store_true")
    p.add_argument("--extra-sql", help="SQL file run after installing errands")
    a = p.parse_args(argv)
    return Options(
        jobs=a.jobs, workers=a.workers, concurrency=a.concurrency,
        kill_interval=tuple(a.kill_interval), max_kills=a.max_kills, pg_restarts=a.pg_restarts,
        pg_down=a.pg_down, terminate_interval=a.terminate_interval,
        terminate_count=a.terminate_count, queues=a.queues, max_ms=a.max_ms, chunk=a.chunk,
        netns=a.netns, heartbeat_interval=a.heartbeat_interval,
        heartbeat_timeout=a.heartbeat_timeout, timeout=a.timeout, seed=a.seed,
        keep_logs=a.keep_logs, extra_sql=a.extra_sql,
    )  # fmt: skip


def run_chaos(opts: Options) -> Report:
    """Run the chaos test; the report's ``failures`` is empty when it passed."""
    report = Report()
    chaos = Chaos(opts, report)
    try:
        chaos.setup()
        chaos.run()
        chaos.stop_workers()
        chaos.verdict()
    finally:
        chaos.cleanup()
        if report.failures or opts.keep_logs:
            report.say(f"worker logs kept in {chaos.logdir}")
        else:
            shutil.rmtree(chaos.logdir, ignore_errors=True)
    report.say("RESULT: " + ("PASS" if not report.failures else f"FAIL ({len(report.failures)})"))
    return report


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    with _sigterm_as_exit():
        report = run_chaos(opts)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())

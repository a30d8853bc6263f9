"""The chaos harness: cluster, workers, kills, restarts, cut links (chaos/run.py)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import errands  # noqa: E402
from chaos.cancels import CANCEL_SOME, CANCELS_TABLE  # noqa: E402
from chaos.model import LIMITED_CONCURRENCY, Kill, Options, Report, Slot  # noqa: E402
from chaos.netns import NetNs  # noqa: E402
from chaos.tasks import RESULTS_TABLE, SNOOZED_TABLE  # noqa: E402
from chaos.verdict import Verdict  # noqa: E402
from pgtap import cluster as pgtap_cluster  # noqa: E402
from pgtap.cluster import PgCluster  # noqa: E402

WORKER_SCRIPT = Path(__file__).resolve().parent / "worker.py"
DB = "chaos"

ADDED_TABLE = """
CREATE TABLE IF NOT EXISTS chaos_added (
    job_id bigint PRIMARY KEY,
    chunk int NOT NULL,
    kind text NOT NULL,
    queue_name text,
    cancel_target boolean NOT NULL
)
"""

# Flow control under chaos: 5 queues 'chaos-lim-N' run at most LIMITED_CONCURRENCY
# jobs at once (one pattern limit), and queue 'chaos-held' is paused until every job
# has been added.
FLOW_CONTROL = f"""
SELECT errands.set_queue_limits('chaos-lim-*', {LIMITED_CONCURRENCY});
SELECT errands.pause_queue('chaos-held');
"""

# One chunk: jobs chunk*size+1 .. chunk*size+size; 60 % plain, 20 % keyed, 10 % in
# serial queues, 8 % in limited queues, 2 % in the paused queue.  add_jobs and the
# record of what was added commit together.
ADD_CHUNK = """
WITH specs AS (
    SELECT i,
           CASE WHEN i %% 10 < 6 THEN 'plain' WHEN i %% 10 < 8 THEN 'keyed'
                WHEN i %% 10 = 8 THEN 'serial' WHEN i %% 50 = 49 THEN 'paused'
                ELSE 'limited' END AS kind
    FROM generate_series(%(first)s::int, %(last)s::int) AS i
), added AS (
    SELECT a.id, a.queue_name, a.key, (a.payload->>'n')::int %% 100 = 13 AS cancel_target
    FROM errands.add_jobs(
        (SELECT array_agg(ROW(
             'chaos_job',
             json_build_object('max_ms', %(max_ms)s::int, 'n', i, 'snooze', i %% 20 = 7,
                               'long', i %% 100 = 13),
             CASE kind WHEN 'serial' THEN 'chaos-q' || ((i / 10) %% %(queues)s::int)
                       WHEN 'limited' THEN 'chaos-lim-' || ((i / 50) %% 5)
                       WHEN 'paused' THEN 'chaos-held' END,
             NULL, NULL,
             CASE WHEN kind = 'keyed' THEN 'chaos-key-' || i END,
             NULL, NULL)::errands.job_spec ORDER BY i)
         FROM specs)) AS a
)
INSERT INTO chaos_added (job_id, chunk, kind, queue_name, cancel_target)
SELECT id, %(chunk)s::int,
       CASE WHEN queue_name LIKE 'chaos-q%%' THEN 'serial'
            WHEN queue_name LIKE 'chaos-lim-%%' THEN 'limited'
            WHEN queue_name = 'chaos-held' THEN 'paused'
            WHEN key IS NOT NULL THEN 'keyed' ELSE 'plain' END,
       queue_name, cancel_target
FROM added
"""

# One flow per chunk, added after the chunk (its own transaction): a diamond
# top -> (left, right) -> bottom of chaos jobs; chaos_flows records its jobs (the
# graph is errands._flow_steps).
FLOWS_TABLE = """
CREATE TABLE IF NOT EXISTS chaos_flows (
    job_id bigint PRIMARY KEY,
    chunk int NOT NULL
)
"""
ADD_FLOW = """
WITH step(name, deps) AS (
    VALUES ('top', '[]'::jsonb), ('left', '["top"]'), ('right', '["top"]'),
           ('bottom', '["left", "right"]')
)
INSERT INTO chaos_flows (job_id, chunk)
SELECT f.job_id, %(chunk)s::int
FROM errands.add_flow(jsonb_build_object('steps', (
    SELECT jsonb_agg(jsonb_build_object(
        'name', name, 'task', 'chaos_job', 'depends_on', deps,
        'payload', jsonb_build_object('max_ms', %(max_ms)s::int)))
    FROM step))) f
"""


class Chaos(Verdict):
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
        self.resumed_at: float | None = None  # wall time of resume_queue('chaos-held')
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
        saved = pgtap_cluster.SERVER_OPTIONS
        if opts.crash:  # a crash must lose only what was committed asynchronously
            pgtap_cluster.SERVER_OPTIONS = saved.replace(
                "synchronous_commit=off", "synchronous_commit=on"
            )
        try:
            self.cluster = PgCluster(extra_listen_addresses=extra).start()
        finally:
            pgtap_cluster.SERVER_OPTIONS = saved
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
            conn.execute(FLOW_CONTROL)
            conn.execute(RESULTS_TABLE)
            conn.execute(SNOOZED_TABLE)
            conn.execute(ADDED_TABLE)
            conn.execute(CANCELS_TABLE)
            # History on: every job's end (completed or cancelled) is checked.
            conn.execute("SELECT errands.set_retention('1 hour')")
            conn.execute(FLOWS_TABLE)
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
        self.cluster.restart(self.opts.pg_down, crash=self.opts.crash)
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
        with contextlib.suppress(psycopg.OperationalError):
            self.sql(ADD_FLOW, {"chunk": self.chunks, "max_ms": self.opts.max_ms}, fetch=False)
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
            if self.added >= opts.jobs and self.resumed_at is None:
                self.resumed_at = time.time()
                self.sql("SELECT errands.resume_queue('chaos-held')")
                print(f"  [{self.elapsed():6.1f}s] resumed queue chaos-held", flush=True)
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
            if self.rng.random() < 0.3:
                # The commit may be lost with the connection: chaos_cancels says.
                with contextlib.suppress(psycopg.OperationalError):
                    self.sql(CANCEL_SOME, fetch=False)
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

"""The chaos test's verdict: what the results table and the worker logs must show.

A mixin of :class:`chaos.harness.Chaos`: it reads the harness's records (kills,
restarts, terminated connections, the cut link) and its database.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from chaos.cancels import check_cancels
from chaos.model import LIMITED_CONCURRENCY

if TYPE_CHECKING:
    from chaos.model import Kill

LOCK_LOST_RE = re.compile(r"#(\d+) \(attempt (\d+)/\d+\): the job's lock was lost")


class Verdict:
    """The checks of a finished run; uses the harness's ``sql``, ``report``, ``opts``,
    ``logdir``, ``kills``, ``restarts``, ``conn_events``, ``unexpected_exits``,
    ``cut`` and ``resumed_at``."""

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
            f"{kinds['serial']} in {opts.queues} serial queues, {kinds['limited']} in 5 queues"
            f" limited to {LIMITED_CONCURRENCY}, {kinds['paused']} in a paused queue);"
            f" workers: {opts.workers} x "
            f"concurrency {opts.concurrency}"
        )
        rep.say(
            f"chaos: {len(self.kills)} SIGKILLs, {len(self.restarts)} PostgreSQL restarts, "
            f"{len(self.terminated)} connections terminated from SQL"
            + (", 1 link cut" if self.cut else "")
        )
        rep.say(f"total time: {self.total_time:.1f} s; executions recorded: {len(rows)}")
        starts = self.read_starts()
        cancelled = check_cancels(self.sql, rep, by_job, starts)
        missing = [j for j in added if j not in by_job and j not in cancelled]
        rep.check(
            len(added) == opts.jobs and not missing,
            f"every job added and not cancelled ran to completion at least once "
            f"({len(added) - len(missing)}"
            f"/{len(added)} of {opts.jobs} planned"
            + (f"; missing e.g. {missing[:5]}" if missing else "")
            + ")",
        )
        flow_jobs = {r[0] for r in self.sql("SELECT job_id FROM chaos_flows")}
        strangers = [j for j in by_job if j not in added and j not in flow_jobs]
        rep.check(not strangers, f"no execution of a job that was not added ({len(strangers)})")
        rep.check(remaining == 0, f"no job remains in errands._jobs ({remaining})")
        snoozed = {r[0] for r in self.sql("SELECT job_id FROM chaos_snoozed")}
        # Job n of the run (1-based) snoozes when n % 20 == 7 (ADD_CHUNK).
        planned = sum(1 for n in range(1, opts.jobs + 1) if n % 20 == 7)
        rep.check(
            len(snoozed) == planned and snoozed <= set(by_job),
            f"every job asked to snooze snoozed once and ran to completion afterwards"
            f" ({len(snoozed)} of {planned})",
        )

        self.verdict_flows(by_job)

        # Serial queues: executions sorted by start must not overlap.
        overlaps: list[str] = []
        per_queue: dict[str, list[Any]] = defaultdict(list)
        for r in rows:
            if r[3] is not None and not r[3].startswith("chaos-lim-"):
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
        self.verdict_flow_control(rows)

        # Jobs that ran more than once (started more than once), and why.
        logs = self.worker_logs()
        causes: Counter[str] = Counter()
        unexplained: list[str] = []
        rerun_jobs = 0
        next_error = {(r[0], r[1]): r[6] for r in rows}  # (job, attempt) -> previous error
        snoozes = {
            tuple(r) for r in self.sql("SELECT job_id, attempt, worker_id FROM chaos_snoozed")
        }
        for job_id, tries in starts.items():
            if len(tries) < 2:
                continue
            rerun_jobs += 1
            tries.sort(key=lambda t: t[2])
            for (attempt, worker, at), nxt in itertools.pairwise(tries):
                if (job_id, attempt, worker) in snoozes:
                    cause = "snoozed"  # the try ended by handing its attempt back
                else:
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
                if job_id in cancelled:
                    continue  # a cancelled job must not run again
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
            self.verdict_cut(by_job, starts, logs, cancelled)

    def verdict_flows(self, by_job: dict[int, list[Any]]) -> None:
        """Flows (one diamond per chunk): every step ran to completion, and no step
        started before some execution of each step it depends on had ended."""
        rep = self.report
        steps = self.sql(
            "SELECT s.job_id, s.flow_id, s.step, s.depends_on FROM errands._flow_steps s"
            " JOIN chaos_flows c ON c.job_id = s.job_id"
        )
        job_of = {(r[1], r[2]): r[0] for r in steps}
        missing = [r[0] for r in steps if r[0] not in by_job]
        early: list[str] = []
        for job_id, flow_id, step, depends_on in steps:
            if job_id not in by_job:
                continue
            first_start = min(r[4] for r in by_job[job_id])
            for dep in depends_on:
                ends = [r[5] for r in by_job.get(job_of[(flow_id, dep)], [])]
                if not ends or min(ends) > first_start:
                    early.append(
                        f"flow {flow_id}: {step} (job {job_id}) started before {dep} ended"
                    )
        flows = len({r[1] for r in steps})
        rep.check(
            bool(steps) and not missing,
            f"every flow step ran to completion ({len(steps) - len(missing)}/{len(steps)} steps"
            f" of {flows} flows)",
        )
        rep.check(not early, f"no flow step started before its dependencies ended ({len(early)})")
        for line in early[:10]:
            rep.say("      " + line)
    def verdict_flow_control(self, rows: list[Any]) -> None:
        """Limited queues never ran more than their limit at once; the paused queue
        started nothing before it was resumed."""
        rep = self.report
        worst: dict[str, int] = {}
        for queue in {r[3] for r in rows if r[3] and r[3].startswith("chaos-lim-")}:
            # Ends sort before starts at the same instant: touching is not overlapping.
            runs = [r for r in rows if r[3] == queue]
            events = sorted([(r[4], 1) for r in runs] + [(r[5], -1) for r in runs])
            running = best = 0
            for _, step in events:
                running += step
                best = max(best, running)
            worst[queue] = best
        rep.check(
            bool(worst) and max(worst.values()) <= LIMITED_CONCURRENCY,
            f"no limited queue ran more than {LIMITED_CONCURRENCY} jobs at once"
            f" (most at once per queue: {dict(sorted(worst.items()))})",
        )
        held = [r for r in rows if r[3] == "chaos-held"]
        early = [r for r in held if self.resumed_at is None or r[4] < self.resumed_at]
        rep.check(
            bool(held) and not early,
            f"the paused queue started nothing before it was resumed ({len(held)} executions,"
            f" {len(early)} before the resume)",
        )

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
        cancelled: set[int],
    ) -> None:
        rep = self.report
        assert self.cut is not None
        cut_id: str = self.cut["worker_id"]
        # A cancelled job must not run again (check_cancels checks that it did not).
        locked: dict[int, int] = {
            j: a for j, a in self.cut["locked"].items() if j not in cancelled
        }  # fmt: skip
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

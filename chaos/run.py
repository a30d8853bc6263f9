"""Chaos test: many jobs, workers SIGKILLed, PostgreSQL restarted, connections cut.

``make chaos`` (``python chaos/run.py``) runs the full size; ``--help`` lists the
knobs.  ``tests_py/test_chaos.py`` runs a short version inside ``make test``.

What happens:

* a throwaway PostgreSQL cluster (pgtap.cluster.PgCluster, because it gets
  restarted) with errands installed and the tables ``chaos_added`` (every job the
  harness added, written in the same transaction as ``add_jobs``) and
  ``chaos_results`` (one row per finished execution, see chaos/tasks.py);
* ``--workers`` worker processes (chaos/worker.py) at ``--concurrency``; the jobs
  are plain (60 %), keyed (20 %, unique ``job_key``), in serial named queues
  (10 %, ``--queues`` queues), in 5 queues limited to 3 at once by one pattern
  (``'chaos-lim-*'``, 8 %) and in a paused queue resumed once every job is added
  (2 %), added in chunks while the workers run, keeping a backlog of about two
  chunks; after each chunk, one flow (errands.add_flow: a diamond top -> left,
  right -> bottom of the same task, recorded in ``chaos_flows``);
* every ``--kill-interval`` seconds (random in the range) one worker is killed
  with SIGKILL and started again under a new worker id; the jobs it had locked
  at that moment are recorded with their attempt number;
* PostgreSQL is restarted ``--pg-restarts`` times (fast shutdown, or immediate
  with ``--crash`` on a cluster committing synchronously, ``--pg-down``
  seconds down) at evenly spread points of progress;
* every ``--terminate-interval`` seconds ``--terminate-count`` random client
  connections of the workers are terminated with ``pg_terminate_backend``;
* with ``--netns`` (default ``auto``: when root and ``ip netns`` works), the last
  two workers run as separate hosts in network namespaces joined to PostgreSQL by
  veth links; halfway through, one host's link is cut for longer than the
  heartbeat timeout and then restored.

Verdict (exit code 1 on any failure): every job added ran to completion at least
once; no job remains; no two executions of a serial queue overlapped in time;
no limited queue ran more than 3 executions at once; the paused queue started
nothing before its resume;
every job that ran more than once is explained by a killed worker, a dead
connection or the cut link (counted per cause); every job a killed worker had
locked ran again (the rescue delay, SIGKILL to the next attempt's start, is
reported: max and p50, target max <= 5 s, p50 <= 2 s); with the network part:
the cut host's jobs ran again elsewhere and its late completions were refused
(logged as a lost lock by that worker); every flow step ran to completion and
none started before some execution of each step it depends on had ended.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from chaos.harness import Chaos  # noqa: E402
from chaos.model import Options, Report  # noqa: E402

__all__ = ["Options", "Report", "main", "run_chaos"]


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
    p.add_argument("--crash", action="store_true",
                   help="restarts are crashes (immediate stop), commits synchronous")  # fmt: skip
    a = p.parse_args(argv)
    return Options(
        jobs=a.jobs, workers=a.workers, concurrency=a.concurrency,
        kill_interval=tuple(a.kill_interval), max_kills=a.max_kills, pg_restarts=a.pg_restarts,
        pg_down=a.pg_down, terminate_interval=a.terminate_interval,
        terminate_count=a.terminate_count, queues=a.queues, max_ms=a.max_ms, chunk=a.chunk,
        netns=a.netns, heartbeat_interval=a.heartbeat_interval,
        heartbeat_timeout=a.heartbeat_timeout, timeout=a.timeout, seed=a.seed,
        keep_logs=a.keep_logs, extra_sql=a.extra_sql, crash=a.crash,
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

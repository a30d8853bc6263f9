"""The short chaos run (chaos/run.py; ``make chaos`` runs the full size): a few
thousand plain, keyed, serial-, limited- and paused-queue jobs on two worker
processes, one worker SIGKILLed and one PostgreSQL restart on the way.  Every job
must run to completion at least once, none may remain, no serial queue may
overlap, no limited queue may exceed its limit, nothing starts while paused, every
rerun must follow the kill or a dead connection, and the killed worker's jobs
must run again.  Timing targets are reported, not asserted (they live in the
full run)."""

from __future__ import annotations

from chaos.run import Options, run_chaos


def test_short_chaos_run_loses_nothing() -> None:
    opts = Options(
        jobs=2000, workers=2, concurrency=8, max_kills=1, pg_restarts=1, pg_down=0.5,
        terminate_interval=0, chunk=500, queues=20, netns="off", timeout=150,
        timing_checks=False,
    )  # fmt: skip
    report = run_chaos(opts)
    text = "\n".join(report.lines)
    assert not report.failures, text
    assert "1 SIGKILLs, 1 PostgreSQL restarts" in text, text

"""Cancellations in the chaos test (chaos/run.py).

Job n of the run is a cancellation target when n % 100 == 13, and long (300-600
ms, so that cancellations find it running; 1 % of the jobs, so that slots stay
free for the rescue-delay targets).  Every few
ticks the harness cancels a random target still unfinished, running ones first,
with ``errands.cancel_jobs``; the outcome, the time (``clock_timestamp()`` after
the call, before the commit: no later try can start in between, the cancelled
row is locked) and the attempt of a running job commit with it in
``chaos_cancels``.  Retention is on (1 hour), so every job's end is in
``errands.finished_jobs``.

Verdict: every job whose cancellation committed (outcome cancelled or
cancel_requested) ends ``cancelled`` and is never fetched again (no try with a
later attempt; a job cancelled while not running: no try starts after the
cancellation); every other job ends ``completed``; every job added is in
``errands.finished_jobs`` (none lost).  A running job's try that its worker had
fetched but not yet started, and that starts before the worker hears of the
cancellation (its LISTEN connection was down: the slow poll finds it), is
reported, not a failure: SQL still ends the job cancelled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from chaos.model import Report

CANCELS_TABLE = """
CREATE TABLE IF NOT EXISTS chaos_cancels (
    job_id bigint PRIMARY KEY,
    outcome text NOT NULL,
    at double precision NOT NULL,
    attempt int  -- a running job's attempt at the cancellation
)
"""

# One statement per call of cancel_jobs; the attempt is read after it (a new
# snapshot, the row still locked by this transaction).
CANCEL_SOME = """
DO $cancel$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT * FROM errands.cancel_jobs(ARRAY(
            SELECT a.job_id FROM chaos_added a JOIN errands._jobs j ON j.id = a.job_id
            WHERE a.cancel_target
              AND NOT EXISTS (SELECT 1 FROM chaos_cancels c WHERE c.job_id = a.job_id)
            ORDER BY j.locked_at IS NULL, random()
            LIMIT 1))
    LOOP
        INSERT INTO chaos_cancels (job_id, outcome, at, attempt)
        VALUES (r.id, r.outcome, extract(epoch FROM clock_timestamp()),
                (SELECT j.attempts FROM errands._jobs j WHERE j.id = r.id));
    END LOOP;
END
$cancel$
"""

Sql = Callable[..., list[Any]]


def check_cancels(
    sql: Sql,
    rep: Report,
    by_job: dict[int, list[Any]],
    starts: dict[int, list[tuple[int, str, float]]],
) -> set[int]:
    """Report the cancellation checks; returns the ids whose cancellation committed."""
    cancels = {
        r[0]: (r[1], r[2], r[3])
        for r in sql("SELECT job_id, outcome, at, attempt FROM chaos_cancels")
    }
    outcomes = Counter(c[0] for c in cancels.values())
    cancelled = {j for j, c in cancels.items() if c[0] in ("cancelled", "cancel_requested")}
    states = dict(sql("SELECT id, state FROM errands.finished_jobs"))
    added = [r[0] for r in sql("SELECT job_id FROM chaos_added")]
    rep.say(
        "cancellations: "
        + (", ".join(f"{o} {n}" for o, n in outcomes.most_common()) or "none")
    )

    def after(job_id: int, attempt: int, started: float) -> bool:
        """Whether a try (attempt, start time) came after the job's cancellation."""
        outcome, at, attempt_at = cancels[job_id]
        if outcome == "cancelled" or attempt_at is None:
            return started > at
        return attempt > attempt_at

    wrong_state = [j for j in cancelled if states.get(j) != "cancelled"]
    late_start = [j for j in cancelled if any(after(j, t[0], t[2]) for t in starts.get(j, []))]
    late_run = [j for j in cancelled if any(after(j, r[1], r[4]) for r in by_job.get(j, []))]
    rep.check(
        bool(cancelled) and not wrong_state and not late_start and not late_run,
        f"every job whose cancellation committed ended cancelled and was never fetched again "
        f"({len(cancelled)} jobs; wrong state: {wrong_state[:5]}, later tries started: "
        f"{late_start[:5]}, executed: {late_run[:5]})",
    )
    buffered = [
        j for j, c in cancels.items()
        if c[0] == "cancel_requested"
        and any(t[0] == c[2] and t[2] > c[1] for t in starts.get(j, []))
    ]  # fmt: skip
    rep.say(
        f"      {len(buffered)} cancelled while fetched but not started yet began that try "
        "before their worker heard of it (ended cancelled all the same)"
    )
    finished_anyway = sum(
        1 for j, (o, at, _) in cancels.items()
        if o == "cancel_requested" and any(r[5] >= at for r in by_job.get(j, []))
    )  # fmt: skip
    rep.say(
        f"      {outcomes['cancel_requested']} cancelled while running, of which "
        f"{finished_anyway} had already ended their work when the request came"
    )
    lost = [j for j in added if j not in states]
    not_completed = [j for j in added if j not in cancelled and states.get(j) != "completed"]
    rep.check(
        not lost and not not_completed,
        f"every job added is in errands.finished_jobs, cancelled or else completed "
        f"(missing: {lost[:5]}, not completed: {not_completed[:5]})",
    )
    return cancelled

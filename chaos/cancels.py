"""Cancellations in the chaos test (chaos/run.py).

Job n of the run is long (300-600 ms, so that cancellations find it running)
when n % 50 == 13, and a cancellation target when n % 100 == 13.  Every few
ticks the harness cancels a random target still unfinished, running ones first,
with ``errands.cancel_jobs``; the outcome and the time (``clock_timestamp()``
after the call, before the commit: no later try can start in between, the
cancelled row is locked) commit with it in ``chaos_cancels``.  Retention is on
(1 hour), so every job's end is in ``errands.finished_jobs``.

Verdict: every job whose cancellation committed (outcome cancelled or
cancel_requested) ends ``cancelled`` and no try of it starts after that; every
other job ends ``completed``; every job added is in ``errands.finished_jobs``
(none lost).
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
    at double precision NOT NULL
)
"""

CANCEL_SOME = """
WITH picked AS (
    SELECT a.job_id FROM chaos_added a JOIN errands._jobs j ON j.id = a.job_id
    WHERE a.cancel_target
      AND NOT EXISTS (SELECT 1 FROM chaos_cancels c WHERE c.job_id = a.job_id)
    ORDER BY j.locked_at IS NULL, random()
    LIMIT %(count)s
), c AS MATERIALIZED (
    SELECT * FROM errands.cancel_jobs(ARRAY(SELECT job_id FROM picked))
)
INSERT INTO chaos_cancels (job_id, outcome, at)
SELECT c.id, c.outcome, extract(epoch FROM clock_timestamp()) FROM c
"""

Sql = Callable[..., list[Any]]


def check_cancels(
    sql: Sql,
    rep: Report,
    by_job: dict[int, list[Any]],
    starts: dict[int, list[tuple[int, str, float]]],
) -> set[int]:
    """Report the cancellation checks; returns the ids whose cancellation committed."""
    cancels = {r[0]: (r[1], r[2]) for r in sql("SELECT job_id, outcome, at FROM chaos_cancels")}
    outcomes = Counter(o for o, _ in cancels.values())
    cancelled = {j for j, (o, _) in cancels.items() if o in ("cancelled", "cancel_requested")}
    states = dict(sql("SELECT id, state FROM errands.finished_jobs"))
    added = [r[0] for r in sql("SELECT job_id FROM chaos_added")]
    rep.say(
        "cancellations: "
        + (", ".join(f"{o} {n}" for o, n in outcomes.most_common()) or "none")
    )
    wrong_state = [j for j in cancelled if states.get(j) != "cancelled"]
    late_start = [
        j for j in cancelled if any(t[2] > cancels[j][1] for t in starts.get(j, []))
    ]  # fmt: skip
    late_run = [j for j in cancelled if any(r[4] > cancels[j][1] for r in by_job.get(j, []))]
    rep.check(
        bool(cancelled) and not wrong_state and not late_start and not late_run,
        f"every job whose cancellation committed ended cancelled and never started again "
        f"({len(cancelled)} jobs; wrong state: {wrong_state[:5]}, tries started after: "
        f"{late_start[:5]}, executions begun after: {late_run[:5]})",
    )
    finished_anyway = sum(
        1 for j, (o, at) in cancels.items()
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

"""Query plans of the fetch and of a keyed add_job, captured with auto_explain.

Two databases with the same runnable jobs (100 unqueued and 15 in 3 named queues, all
for task 'work') and the same flow control (a paused queue, a full queue, a full task;
tests_sql/120_limits.sql); one of them also holds 1,500,000 rows no fetch should look
at: 500,000 future-scheduled and 500,000 permanently failed jobs of task 'work',
200,000 runnable jobs of a task no worker asks for, and 100,000 due jobs behind each
limit (the paused queue, the full queue, the full task). The statements inside
errands.get_jobs are planned and run through auto_explain (log_analyze, log_buffers,
nested statements, sent to the client as NOTICEs); their plans are printed (pytest -s)
and the shared buffers they touch are compared between the two databases.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import psycopg
import pytest

AUTO_EXPLAIN = [
    "LOAD 'auto_explain'",
    "SET auto_explain.log_min_duration = 0",
    "SET auto_explain.log_nested_statements = on",
    "SET auto_explain.log_analyze = on",
    "SET auto_explain.log_buffers = on",
    "SET auto_explain.log_level = notice",
    "SET client_min_messages = notice",
]

RUNNABLE = """
SELECT count(*) FROM errands.add_jobs(ARRAY(
    SELECT ROW('work', json_build_object('i', g), NULL, now() - interval '1 minute',
               NULL, NULL, NULL, NULL)::errands.job_spec
    FROM generate_series(1, 100) g));
SELECT count(*) FROM errands.add_jobs(ARRAY(
    SELECT ROW('work', json_build_object('q', g), 'queue' || g % 3, now() - interval '1 minute',
               NULL, NULL, NULL, NULL)::errands.job_spec
    FROM generate_series(1, 15) g));
SELECT errands.add_job('unasked', run_at => now() + interval '1 year');
"""

# Flow control in both databases: queue 'held' is paused, queue 'capped' runs 2 of 2,
# task 'limited' runs 1 of 1 (the running jobs are locked by 'holder').
LIMITS = """
SELECT errands.add_job('work', queue_name => 'held');
SELECT errands.pause_queue('held');
SELECT errands.set_queue_limits('capped', 2);
SELECT errands.add_job('work', queue_name => 'capped') FROM generate_series(1, 2);
UPDATE errands._jobs j SET locked_at = now(), locked_by = 'holder', attempts = 1
FROM errands._queues q WHERE q.id = j.job_queue_id AND q.queue_name = 'capped';
UPDATE errands._queues SET running = 2, locked_at = now(), locked_by = 'holder'
WHERE queue_name = 'capped';
SELECT errands.add_job('limited');
UPDATE errands._jobs j SET locked_at = now(), locked_by = 'holder', attempts = 1
FROM errands._tasks t WHERE t.id = j.task_id AND t.identifier = 'limited';
SELECT errands.set_task_limits('limited', 1);
"""

HELD_BACK_ROWS = """
INSERT INTO errands._jobs (task_id, job_queue_id, run_at)
SELECT t.id, q.id, now() - interval '1 hour'
FROM errands._tasks t, errands._queues q, generate_series(1, 100000) g
WHERE t.identifier = 'work' AND q.queue_name IN ('held', 'capped');
INSERT INTO errands._jobs (task_id, run_at)
SELECT t.id, now() - interval '1 hour'
FROM errands._tasks t, generate_series(1, 100000) g
WHERE t.identifier = 'limited';
"""

EXTRA_ROWS = """
INSERT INTO errands._jobs (task_id, run_at, attempts, max_attempts)
SELECT t.id,
       CASE WHEN g % 2 = 0 THEN now() + interval '1 hour' + g * interval '1 second'
            ELSE now() - interval '1 day' END,
       CASE WHEN g % 2 = 0 THEN 0 ELSE 25 END,
       25
FROM errands._tasks t, generate_series(1, 1000000) g
WHERE t.identifier = 'work';
INSERT INTO errands._jobs (task_id, run_at)
SELECT t.id, now() - interval '1 hour'
FROM errands._tasks t, generate_series(1, 200000) g
WHERE t.identifier = 'unasked';
"""

_BUFFERS_RE = re.compile(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?")
_TOP_NODE_RE = re.compile(r"^\S.*\(cost=")


@dataclass
class Plan:
    """One statement's auto_explain output."""

    query: str
    plan: str

    @property
    def top_buffers(self) -> int:
        """shared hit + read of the top plan node (0 when it lists none)."""
        lines = self.plan.splitlines()
        for line in lines[1:]:
            if line.startswith(("  ->", "  CTE ")) or not line.startswith("  "):
                break
            match = _BUFFERS_RE.search(line)
            if match:
                return sum(int(g or 0) for g in match.groups())
        return 0

    def __str__(self) -> str:
        return f"Query Text: {self.query.strip()}\n{self.plan}"


def parse_notice(message: str) -> Plan | None:
    if "Query Text:" not in message:
        return None
    body = message.split("Query Text:", 1)[1]
    lines = body.splitlines()
    for i, line in enumerate(lines):
        if i > 0 and _TOP_NODE_RE.match(line):
            return Plan(query="\n".join(lines[:i]), plan="\n".join(lines[i:]))
    return None


class Explainer:
    """A connection whose statements (and the statements nested in them) are explained."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.notices: list[str] = []
        self.conn.add_notice_handler(lambda diag: self.notices.append(diag.message_primary or ""))
        for statement in AUTO_EXPLAIN:
            self.conn.execute(statement)

    def plans(self, sql: str, setup: str | None = None) -> list[Plan]:
        """Plans of the statements run by ``sql`` (not ``sql`` itself), then roll back."""
        with self.conn.transaction(force_rollback=True):
            if setup is not None:
                self.conn.execute(setup).fetchall()
            self.notices.clear()
            self.conn.execute(sql).fetchall()
        plans = [p for p in map(parse_notice, self.notices) if p is not None]
        return [p for p in plans if p.query.strip() != sql.strip()]

    def close(self) -> None:
        self.conn.close()


def jobs_plans(plans: list[Plan]) -> list[Plan]:
    """The statements that read errands._jobs."""
    return [p for p in plans if re.search(r"\bon _jobs\b", p.plan)]


@dataclass
class Databases:
    base: Explainer
    big: Explainer


@pytest.fixture(scope="module")
def databases(
    database_factory: Callable[..., AbstractContextManager[str]], errands_template: str
) -> Iterator[Databases]:
    with (
        database_factory(template=errands_template, prefix="plan_base") as base_dsn,
        database_factory(template=errands_template, prefix="plan_big") as big_dsn,
    ):
        for dsn, extra in ((base_dsn, False), (big_dsn, True)):
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute(RUNNABLE)
                c.execute(LIMITS)
                if extra:
                    c.execute(EXTRA_ROWS)
                    c.execute(HELD_BACK_ROWS)
                c.execute("VACUUM ANALYZE errands._jobs")
                c.execute("ANALYZE errands._queues")
                c.execute("ANALYZE errands._tasks")
        dbs = Databases(Explainer(base_dsn), Explainer(big_dsn))
        try:
            yield dbs
        finally:
            dbs.base.close()
            dbs.big.close()


def compare_fetch(
    dbs: Databases, sql: str, setup: str | None = None
) -> tuple[int, int, list[Plan]]:
    """(buffers without, buffers with the extra rows, plans with them) of a fetch."""
    results = []
    for explainer in (dbs.base, dbs.big):
        explainer.plans(sql, setup)  # warm up: plpgsql compiled, hint bits set
        plans = jobs_plans(explainer.plans(sql, setup))
        assert plans, f"no plan of a statement reading _jobs was captured for {sql}"
        results.append((sum(p.top_buffers for p in plans), plans))
    (base_buffers, _), (big_buffers, big_plans) = results
    print(
        f"\n=== {sql}\n=== buffers: {base_buffers} small, {big_buffers} big (extra rows or queues)"
    )
    for plan in big_plans:
        print(plan)
    return base_buffers, big_buffers, big_plans


def assert_flat(base: int, big: int) -> None:
    assert big <= 2 * base + 20, (
        f"the fetch touched {big} shared buffers with 1.5M extra rows, {base} without:"
        " its cost grows with jobs it does not return"
    )


def test_fetch_from_a_backlog_is_an_index_scan_with_flat_cost(databases: Databases) -> None:
    base, big, plans = compare_fetch(databases, "SELECT * FROM errands.get_jobs('w', '{work}', 10)")
    text = "\n".join(p.plan for p in plans)
    assert "Seq Scan on _jobs" not in text
    assert "jobs_fetch_unqueued" in text
    assert base > 0
    assert_flat(base, big)


def test_idle_poll_is_an_index_scan_with_flat_cost(databases: Databases) -> None:
    """The most common fetch: a worker polls and nothing is due.

    All due jobs are taken first (in the same, rolled-back, transaction); then the poll
    must not walk the 500,000 future-scheduled jobs of the task it asks for.
    """
    base, big, plans = compare_fetch(
        databases,
        "SELECT * FROM errands.get_jobs('idle', '{work}', 10)",
        setup="SELECT count(*) FROM errands.get_jobs('drain', '{work}', 1000)",
    )
    text = "\n".join(p.plan for p in plans)
    assert "Seq Scan on _jobs" not in text
    assert "jobs_fetch_unqueued" in text
    assert_flat(base, big)


def test_idle_poll_does_not_read_work_held_back_by_flow_control(databases: Databases) -> None:
    """A poll for the limited task and the task with a paused and a full queue, after
    every due job it may take is taken: the 300,000 held-back jobs are not read."""
    base, big, plans = compare_fetch(
        databases,
        "SELECT * FROM errands.get_jobs('idle', '{work,limited}', 10)",
        setup="SELECT count(*) FROM errands.get_jobs('drain', '{work,limited}', 1000)",
    )
    text = "\n".join(p.plan for p in plans)
    assert "Seq Scan on _jobs" not in text
    assert_flat(base, big)


def test_add_job_with_key_uses_the_key_index(databases: Databases) -> None:
    explainer = databases.big
    for label, setup in (
        ("new key", None),
        ("existing key", "SELECT errands.add_job('work', job_key => 'plan-key')"),
    ):
        plans = jobs_plans(
            explainer.plans(
                "SELECT * FROM errands.add_job('work', '{\"x\": 1}', job_key => 'plan-key')", setup
            )
        )
        print(f"\n=== add_job with a job_key ({label}): {len(plans)} statements read _jobs")
        for plan in plans:
            print(plan)
        text = "\n".join(p.plan for p in plans)
        assert plans
        assert "Seq Scan on _jobs" not in text, label
        assert re.search(r"Index (Only )?Scan using jobs_key on _jobs", text), label


# Named queues by the thousand (issue 17): 10 queues of each kind vs 20,000. Busy
# queues: 2 jobs each, the first taken (committed: the serial queue is full, its
# second job held back); later queues: one job an hour ahead; due queues (only with
# ``due``): 2 due jobs each.
def _queues_sql(count: int, due: bool) -> str:
    def jobs(name: str, per_queue: int, run_at: str) -> str:
        return f"""
SELECT count(*) FROM errands.add_jobs(ARRAY(
    SELECT ROW('work', NULL, '{name}' || g % {count}, {run_at},
               NULL, NULL, NULL, NULL)::errands.job_spec
    FROM generate_series(1, {per_queue} * {count}) g));"""

    # Both databases also hold 100,000 jobs in a paused queue, so that their
    # indexes are as deep and only the number of queues differs.
    sql = "SELECT errands.pause_queue('ballast');"
    sql += jobs("ballast", 100_000 // count, "now() - interval '1 minute'").replace(
        f"'ballast' || g % {count}", "'ballast'"
    )
    sql += jobs("busy", 2, "now() - interval '1 minute'")
    sql += "\nSELECT count(*) FROM errands.get_jobs('holder', '{work}', 1000000);"
    sql += jobs("later", 1, "now() + interval '1 hour'")
    if due:
        sql += jobs("due", 2, "now() - interval '1 minute'")
    return sql


@contextmanager
def _queue_databases(
    database_factory: Callable[..., AbstractContextManager[str]], template: str, due: bool
) -> Iterator[Databases]:
    with (
        database_factory(template=template, prefix="plan_few_queues") as few_dsn,
        database_factory(template=template, prefix="plan_many_queues") as many_dsn,
    ):
        for dsn, count in ((few_dsn, 10), (many_dsn, 20_000)):
            with psycopg.connect(dsn, autocommit=True) as c:
                for statement in _queues_sql(count, due).strip().split(";\n"):
                    c.execute(statement)
                c.execute("VACUUM ANALYZE errands._jobs")
                c.execute("VACUUM ANALYZE errands._queues")
        dbs = Databases(Explainer(few_dsn), Explainer(many_dsn))
        try:
            yield dbs
        finally:
            dbs.base.close()
            dbs.big.close()


def test_fetch_cost_is_flat_in_the_number_of_named_queues(
    database_factory: Callable[..., AbstractContextManager[str]], errands_template: str
) -> None:
    with _queue_databases(database_factory, errands_template, due=True) as dbs:
        base, big, plans = compare_fetch(dbs, "SELECT * FROM errands.get_jobs('w', '{work}', 10)")
    text = "\n".join(p.plan for p in plans)
    assert "queues_ready" in text
    assert "Seq Scan on _queues" not in text
    assert base > 0
    assert big <= 2 * base + 20, (
        f"the fetch touched {big} shared buffers with 20,000 named queues of each kind,"
        f" {base} with 10: its cost grows with the number of queues"
    )


def test_idle_poll_is_flat_in_the_number_of_full_and_future_queues(
    database_factory: Callable[..., AbstractContextManager[str]], errands_template: str
) -> None:
    """Every queue is full (its one job running, the next held back) or has its only
    job an hour ahead: the poll reads neither kind."""
    with _queue_databases(database_factory, errands_template, due=False) as dbs:
        base, big, plans = compare_fetch(
            dbs, "SELECT * FROM errands.get_jobs('idle', '{work}', 10)"
        )
    text = "\n".join(p.plan for p in plans)
    assert "queues_ready" in text
    assert "Seq Scan on _queues" not in text
    assert big <= 2 * base + 20, (
        f"the idle poll touched {big} shared buffers with 20,000 full and 20,000 future"
        f" queues, {base} with 10 of each: its cost grows with the number of queues"
    )

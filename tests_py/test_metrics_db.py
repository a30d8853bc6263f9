"""errands.metrics_db: the database-wide gauges equal what SQL counts."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

import errands

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families

from errands.metrics_db import render_database_metrics, render_database_metrics_async


def parse(body: bytes) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = (
                sample.value
            )
    return samples


def make_jobs(conn: psycopg.Connection[Any]) -> None:
    """Jobs in every state, in two tasks and a named queue."""
    for _ in range(3):
        errands.add_job(conn, "mail")  # pending
    errands.add_job(conn, "mail", queue_name="q:1")  # pending, named queue
    conn.execute("SELECT errands.add_job('mail', run_at => now() + interval '1 hour')")
    conn.execute("SELECT errands.add_job('pdf', run_at => now() - interval '1 hour')")  # oldest
    first = errands.add_job(conn, "pdf", max_attempts=1)
    errands.add_job(conn, "pdf", depends_on=[first.id])  # waiting
    errands.add_job(conn, "pdf", max_attempts=3)
    # pdf: the oldest one, then the max_attempts=1 job, then the max_attempts=3 one
    conn.execute("SELECT errands.get_jobs('w1', ARRAY['pdf'], 3)")
    failed = conn.execute(
        "SELECT id FROM errands.jobs WHERE locked_by = 'w1' AND max_attempts < 25 ORDER BY id"
    ).fetchall()
    conn.execute(
        "SELECT errands.worker_fail_jobs('w1', %s::bigint[], ARRAY['boom', 'boom'])",
        [[r[0] for r in failed]],
    )  # one failed for good, one retrying; the oldest stays running
    # Without a session lock: alive by heartbeat only; the third holds none (dead).
    conn.execute("SELECT errands.register_worker('w-alive', NULL, NULL, false)")
    conn.execute("SELECT errands.register_worker('w-hung', NULL, NULL, false)")
    conn.execute("SELECT errands.register_worker('w-dead')")
    conn.execute(
        "UPDATE errands._workers SET last_heartbeat = now() - interval '1 hour'"
        " WHERE id = 'w-hung'"
    )


def test_database_gauges_equal_sql_counts(conn: psycopg.Connection[Any]) -> None:
    make_jobs(conn)
    samples = parse(render_database_metrics(conn))
    rows = conn.execute(
        "SELECT task_identifier, coalesce(queue_name, ''), state, count(*) FROM errands.jobs"
        " GROUP BY 1, 2, 3"
    ).fetchall()
    assert {(t, q, s) for t, q, s, _ in rows} >= {
        ("mail", "", "pending"), ("mail", "q:1", "pending"), ("mail", "", "scheduled"),
        ("pdf", "", "running"), ("pdf", "", "failed"), ("pdf", "", "retrying"),
        ("pdf", "", "waiting"),
    }  # fmt: skip
    gauges = {
        (d["task"], d["queue"], d["state"]): v
        for labels, v in samples["errands_db_jobs"].items()
        for d in [dict(labels)]
    }
    assert gauges == {(t, q, s): n for t, q, s, n in rows}
    assert samples["errands_db_jobs_estimated"][()] == 0
    # The oldest ready job: the three pending mail jobs (seconds old); the pdf job
    # due an hour ago is running.
    row = conn.execute(
        "SELECT extract(epoch FROM now() - min(run_at))::float8 FROM errands.jobs"
        " WHERE state IN ('pending', 'retrying') AND run_at <= now()"
    ).fetchone()
    assert row is not None
    age = samples["errands_db_oldest_pending_job_age_seconds"][()]
    assert age == pytest.approx(row[0], abs=5.0)
    assert age < 600
    workers = {dict(k)["state"]: v for k, v in samples["errands_db_workers"].items()}
    assert workers == {"alive": 1, "hung": 1, "dead": 1}


def test_oldest_pending_age_sees_an_old_job(conn: psycopg.Connection[Any]) -> None:
    for priority in (0, 5):
        errands.add_job(conn, "a", priority=priority)
    conn.execute("SELECT errands.add_job('b', run_at => now() - interval '2 hours', priority => 3)")
    conn.execute(
        "SELECT errands.add_job('c', queue_name => 'q', run_at => now() - interval '3 hours')"
    )
    conn.execute("SELECT errands.add_job('c', run_at => now() + interval '5 hours')")
    age = parse(render_database_metrics(conn))["errands_db_oldest_pending_job_age_seconds"][()]
    assert 3 * 3600 <= age < 3 * 3600 + 60
    # The named-queue job starts: the plain 'b' job is the oldest left.
    conn.execute("SELECT errands.get_jobs('w', ARRAY['c'], 1)")
    age = parse(render_database_metrics(conn))["errands_db_oldest_pending_job_age_seconds"][()]
    assert 2 * 3600 <= age < 2 * 3600 + 60


def test_empty_database(conn: psycopg.Connection[Any]) -> None:
    samples = parse(asyncio.run(_render_async(conn.info.dsn)))
    assert samples.get("errands_db_jobs", {}) == {}
    assert samples["errands_db_oldest_pending_job_age_seconds"][()] == 0
    assert {dict(k)["state"]: v for k, v in samples["errands_db_workers"].items()} == {
        "alive": 0, "hung": 0, "dead": 0,
    }  # fmt: skip


async def _render_async(dsn: str) -> bytes:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        return await render_database_metrics_async(conn)


def test_big_table_is_sampled(conn: psycopg.Connection[Any]) -> None:
    """Above exact_below the counts are estimated from a sample scaled to the
    table: close to the truth, flagged as estimated."""
    conn.execute(
        "SELECT count(*) FROM errands.add_jobs(ARRAY(SELECT ROW(CASE WHEN i % 4 = 0 THEN 'b'"
        " ELSE 'a' END, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::errands.job_spec"
        " FROM generate_series(1, 40000) i))"
    )
    conn.execute("ANALYZE errands._jobs")
    rows = conn.execute(
        "SELECT task_identifier, state, jobs, estimated FROM errands.job_counts(1000, 4000)"
    ).fetchall()
    assert all(est for *_, est in rows)
    counts = {t: n for t, s, n, _ in rows if s == "pending"}
    assert sum(counts.values()) == pytest.approx(40000, rel=0.05)
    # 3 in 4 jobs are 'a': a sample of ~4,000 rows in blocks sees that within 10 %.
    assert counts["a"] / sum(counts.values()) == pytest.approx(0.75, abs=0.1)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="sample_rows >= 1"):
        conn.execute("SELECT * FROM errands.job_counts(10, 0)")


def test_a_reader_role_may_render(conn: psycopg.Connection[Any]) -> None:
    make_jobs(conn)
    conn.execute("CREATE ROLE errands_metrics_reader")
    try:
        conn.execute("SELECT errands.grant_read('errands_metrics_reader')")
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL ROLE errands_metrics_reader")
            samples = parse(render_database_metrics(conn))
        assert sum(samples["errands_db_jobs"].values()) == 9
    finally:
        conn.execute("DROP OWNED BY errands_metrics_reader")
        conn.execute("DROP ROLE errands_metrics_reader")

"""The Python Job is the errands.jobs row: same fields, same order, every state."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import psycopg
from psycopg.rows import dict_row

from errands.job import Job

VIEW_COLUMNS = """
SELECT a.attname FROM pg_attribute a
WHERE a.attrelid = 'errands.jobs'::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def test_job_fields_are_the_view_columns(conn: psycopg.Connection[Any]) -> None:
    """Adding a job column is one SQL edit (the view and _job_row) and one here."""
    columns = [name for (name,) in conn.execute(VIEW_COLUMNS).fetchall()]
    assert [f.name for f in fields(Job)] == columns


def test_job_state_from_both_row_builders(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT errands.add_job('jr_now')")
    conn.execute("SELECT errands.add_job('jr_later', run_at := now() + interval '1 hour')")
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM errands.jobs ORDER BY id").fetchall()
    assert [Job.from_row(r).state for r in rows] == ["pending", "scheduled"]

    with conn.cursor(row_factory=Job.row_factory) as cur:
        (running,) = cur.execute("SELECT * FROM errands.get_jobs('jr_w', ARRAY['jr_now'])")
        listed = cur.execute("SELECT * FROM errands.jobs ORDER BY id").fetchall()
    assert running.state == "running"
    assert running == listed[0]
    assert [j.state for j in listed] == ["running", "scheduled"]
    with conn.cursor(row_factory=dict_row) as cur:
        assert (
            Job.from_row(cur.execute("SELECT * FROM errands.jobs ORDER BY id").fetchone() or {})
            == running
        )

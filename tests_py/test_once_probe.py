"""errands._once: a run-once worker's sweep and first fetch on one blocking
connection (what `errands worker --once` does before starting a worker)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from worker_support import jobs

from errands import Events, WorkerOptions
from errands._once import finds_nothing_to_run


def probe(db: str, options: WorkerOptions, tasks: list[str]) -> tuple[bool, list[Any]]:
    events = Events()
    seen: list[Any] = []
    events.on("*", seen.append)
    with psycopg.connect(db, autocommit=True, row_factory=dict_row) as conn:
        nothing = finds_nothing_to_run(conn, tasks, options, events)
    return nothing, seen


def test_nothing_runnable_emits_what_a_run_once_worker_would(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("SELECT errands.add_job('later', run_at => now() + interval '1 hour')")
    conn.execute("SELECT errands.add_job('other')")
    nothing, seen = probe(db, WorkerOptions(concurrency=7, worker_id="w-probe"), ["later"])
    assert nothing
    assert [(e.name, e.worker_id, e.data) for e in seen] == [
        ("worker:sweep", "w-probe", {"count": 0}),
        ("worker:start", "w-probe", {"tasks": ["later"], "concurrency": 7}),
        ("worker:stop", "w-probe", {}),
    ]
    assert [(r["attempts"], r["locked_by"]) for r in jobs(conn)] == [(0, None)] * 2


def test_a_runnable_job_is_left_as_it_was_for_the_worker(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("SELECT errands.add_job('now', flags => ARRAY['slow'])")
    nothing, seen = probe(db, WorkerOptions(), ["now"])
    assert not nothing and seen == []
    assert [(r["attempts"], r["locked_by"]) for r in jobs(conn)] == [(0, None)]
    # Its forbidden flags count: this worker would find nothing.
    assert probe(db, WorkerOptions(forbidden_flags=["slow"]), ["now"])[0]
    # Flags decided by a function (maybe async): only the worker can ask it.
    assert not probe(db, WorkerOptions(forbidden_flags=lambda: ["slow"]), ["now"])[0]

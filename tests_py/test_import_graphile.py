"""``errands import-graphile`` against a schema installed and driven by the real
Graphile Worker (npm package graphile-worker 0.18.0, bench/peers/graphile).

Jobs are made through Graphile's own API: ``graphile_worker.add_job`` (run_at,
keys, queues, priority, flags, max_attempts), its worker (``--once`` with a task
that throws: one failure with attempts left, one with none left; a long-running
worker holds a job locked and records its crontab in known_crontabs).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest
from graphile_peer import graphile, graphile_bin, running_worker, task_dir, wait_for
from psycopg.rows import dict_row
from typer.testing import CliRunner, Result

import errands
from errands import Helpers, task
from errands.cli import app

FIELDS = (
    "task_identifier, queue_name, payload::text AS payload, priority, run_at, attempts,"
    " max_attempts, key, flags, last_error, created_at, revision"
)

# The same fields of Graphile's jobs, from its tables (its jobs view has no payload).
SOURCE = """
SELECT j.id, t.identifier AS task_identifier, q.queue_name, j.payload::text AS payload,
       j.priority, j.run_at, j.attempts, j.max_attempts, j.key, j.flags, j.last_error,
       j.created_at, j.revision
FROM graphile_worker._private_jobs j
JOIN graphile_worker._private_tasks t ON t.id = j.task_id
LEFT JOIN graphile_worker._private_job_queues q ON q.id = j.job_queue_id
"""


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def import_counts(out: str) -> dict[str, int]:
    """The counts `errands import-graphile` printed, by label."""
    counts = {}
    for line in out.splitlines():
        words = line.split("(")[0].split()
        if words and words[-1].isdigit():
            counts[" ".join(words[:-1])] = int(words[-1])
    return counts


def errands_state(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    return conn.execute(
        "SELECT (SELECT count(*) FROM errands._jobs),"
        " (SELECT count(*) FROM errands._graphile_imports),"
        " (SELECT coalesce(jsonb_agg(k ORDER BY identifier), '[]') FROM errands._known_crontabs k),"
        " (SELECT count(*) FROM errands._tasks), (SELECT count(*) FROM errands._queues)"
    ).fetchone()  # type: ignore[return-value]


@pytest.fixture
def gw(db: str) -> str:
    """``db`` (errands installed) with Graphile Worker's schema installed by its CLI."""
    graphile_bin()
    graphile(db, "--schema-only")
    return db


def test_import_graphile_end_to_end(gw: str, tmp_path: Path) -> None:
    conn = psycopg.connect(gw, autocommit=True, row_factory=dict_row)
    add = "SELECT id FROM graphile_worker.add_job"
    ids = {
        name: conn.execute(f"{add}({args})").fetchone()["id"]  # type: ignore[index]
        for name, args in {
            "plain": "'send_email', json '{\"to\": \"a@example.com\",  \"n\": [1, 2]}'",
            "queued": "'send_email', json '{\"to\": \"b\"}', queue_name => 'mail', priority => -5,"
            " flags => ARRAY['slow', 'smtp']",
            "scheduled": "'report', json '{\"n\": 1}', run_at => now() + interval '1 day',"
            " job_key => 'report:1', max_attempts => 3, priority => 7",
            "keyed": "'send_email', json '{\"to\": \"c\"}', job_key => 'welcome:7',"
            " queue_name => 'mail'",
            "retry": "'boom', json '{\"k\": 1}', max_attempts => 3",
            "dead": "'boom', json '{\"k\": 2}', max_attempts => 1, job_key => 'boom:dead'",
            "hang": "'hang', json '{}'",
            "clash": "'send_email', json '{\"to\": \"d\"}', job_key => 'clash'",
        }.items()
    }
    # An Errands job already has the key "clash": that Graphile job is not copied.
    errands.add_job(conn, "other", {"mine": True}, job_key="clash")

    # Graphile's own worker fails the boom jobs once: one has attempts left, one none.
    boom = "async () => { throw new Error('boom: on purpose') }"
    once = task_dir(tmp_path / "once", {"boom": boom})
    graphile(gw, "--once", cwd=once)
    # A long-running worker takes the hang job (and keeps it) and records its crontab.
    long = task_dir(
        tmp_path / "long",
        # Runs until the worker shuts down (Graphile aborts its running jobs then).
        {"hang": "(p, helpers) => new Promise((_, reject) => helpers.abortSignal"
                 ".addEventListener('abort', () => reject(new Error('worker stopped'))))"},
        crontab="0 4 * * * hang ?id=nightly&fill=1d\n",
    )
    # Crontab state Graphile's worker writes only at a minute boundary (last_execution)
    # is written directly, as Graphile has no SQL function for it; "hourly" is also
    # known to Errands already, later: the import keeps the later execution.
    conn.execute(
        "INSERT INTO graphile_worker._private_known_crontabs VALUES"
        " ('hourly', '2026-01-01 00:00Z', '2026-03-01 10:00Z'),"
        " ('weekly', '2026-01-01 00:00Z', '2026-02-23 00:00Z')"
    )
    conn.execute(
        "INSERT INTO errands._known_crontabs"
        " VALUES ('hourly', '2026-02-01 00:00Z', '2026-03-01 12:00Z')"
    )
    with running_worker(gw, long) as proc:
        wait_for(
            lambda: conn.execute(
                "SELECT (SELECT locked_at IS NOT NULL FROM graphile_worker.jobs WHERE id = %s)"
                " AND EXISTS (SELECT 1 FROM graphile_worker._private_known_crontabs"
                "             WHERE identifier = 'nightly')",
                (ids["hang"],),
            ).fetchone()["?column?"]  # type: ignore[index]
        )
        source = {r["id"]: r for r in conn.execute(SOURCE)}
        assert source[ids["retry"]]["attempts"] == 1 and source[ids["retry"]]["last_error"]
        assert source[ids["dead"]]["attempts"] == 1 == source[ids["dead"]]["max_attempts"]

        before = errands_state(conn)
        dry = cli("import-graphile", "--dry-run", "-c", gw)
        assert dry.exit_code == 0, (dry.stdout, dry.stderr)
        assert "nothing written (--dry-run)" in dry.stdout
        assert errands_state(conn) == before  # --dry-run writes nothing

        first = cli("import-graphile", "-c", gw)
        assert first.exit_code == 0, (first.stdout, first.stderr)
        assert import_counts(first.stdout) == import_counts(dry.stdout)
        assert import_counts(first.stdout) == {
            "jobs": 6, "pending": 3, "scheduled": 1, "retrying": 1, "failed": 1,
            "crontabs": 3, "already copied": 0, "key in use": 1, "running": 1,
        }  # fmt: skip
        assert "1 running job(s) not copied: stop Graphile Worker's workers" in first.stderr
        assert proc.poll() is None

    # Every field landed (created_at and revision too); the state is Graphile's.
    copied = {
        r["source_id"]: r
        for r in conn.execute(
            f"SELECT m.source_id, {FIELDS}, state FROM errands._graphile_imports m"
            " JOIN errands.jobs j ON j.id = m.job_id WHERE m.source_schema = 'graphile_worker'"
        )
    }
    names = ("plain", "queued", "scheduled", "keyed", "retry", "dead")
    assert set(copied) == {ids[n] for n in names}
    for source_id, row in copied.items():
        state = row.pop("state")
        del row["source_id"]
        assert row == {k: v for k, v in source[source_id].items() if k != "id"}, source_id
        expected = {ids["scheduled"]: "scheduled", ids["retry"]: "retrying", ids["dead"]: "failed"}
        assert state == expected.get(source_id, "pending")
    assert copied[ids["queued"]]["flags"] == {"slow": True, "smtp": True}
    assert copied[ids["plain"]]["payload"] == '{"to": "a@example.com",  "n": [1, 2]}'  # json kept
    crontabs = conn.execute(
        "SELECT identifier, known_since, last_execution::text FROM errands._known_crontabs"
        " ORDER BY identifier"
    ).fetchall()
    assert [(c["identifier"], c["last_execution"]) for c in crontabs] == [
        ("hourly", "2026-03-01 12:00:00+00"),  # Errands' later execution kept
        ("nightly", None),
        ("weekly", "2026-02-23 00:00:00+00"),
    ]
    assert str(crontabs[0]["known_since"].date()) == "2026-01-01"  # the earlier one

    # The worker stopped (SIGTERM). Graphile 0.18 aborts the running job but leaves it
    # locked (its failure is not saved before it exits): unlock it as docs/graphile.md
    # says; a second run then copies it, and nothing else twice.
    hang = conn.execute(
        "SELECT locked_at FROM graphile_worker.jobs WHERE id = %s", (ids["hang"],)
    ).fetchone()
    if hang is not None and hang["locked_at"] is not None:
        conn.execute(
            "SELECT graphile_worker.force_unlock_workers(ARRAY(SELECT DISTINCT locked_by"
            " FROM graphile_worker.jobs WHERE locked_by IS NOT NULL))"
        )
    jobs_before = conn.execute("SELECT count(*) AS n FROM errands._jobs").fetchone()
    second = cli("import-graphile", "-c", gw)
    assert second.exit_code == 0, (second.stdout, second.stderr)
    counts = import_counts(second.stdout)
    assert counts["already copied"] == 6 and counts["running"] == 0 and counts["crontabs"] == 0
    assert counts["jobs"] == 1 and counts["key in use"] == 1
    third = cli("import-graphile", "-c", gw)
    assert import_counts(third.stdout)["jobs"] == 0
    assert import_counts(third.stdout)["already copied"] == 7
    assert conn.execute("SELECT count(*) AS n FROM errands._jobs").fetchone() == {
        "n": jobs_before["n"] + 1  # type: ignore[index]
    }

    # An Errands worker runs the imported jobs that are due.
    seen: list[Any] = []

    @task
    def send_email(payload: Any, helpers: Helpers) -> None:
        seen.append((payload["to"], helpers.job.queue_name, helpers.job.key))

    asyncio.run(errands.run_once(gw, [send_email]))
    assert sorted(seen, key=repr) == [
        ("a@example.com", None, None),
        ("b", "mail", None),
        ("c", "mail", "welcome:7"),
    ]
    left = conn.execute("SELECT task_identifier FROM errands.jobs ORDER BY 1").fetchall()
    assert [r["task_identifier"] for r in left] == ["boom", "boom", "hang", "other", "report"]
    conn.close()


def test_bad_input_changes_nothing(gw: str) -> None:
    conn = psycopg.connect(gw, autocommit=True)
    before = errands_state(conn)
    missing = cli("import-graphile", "--schema", "no_such", "-c", gw)
    assert missing.exit_code == 1
    message = "error 3F000: errands: import_graphile: schema 'no_such' does not exist"
    assert message in missing.stderr
    assert "errands install" not in missing.stderr
    other = cli("import-graphile", "--schema", "public", "-c", gw)
    assert other.exit_code == 1
    assert "42P01" in other.stderr and "'public' has no table _private_jobs" in other.stderr
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="schema must not be NULL"):
        conn.execute("SELECT errands.import_graphile(NULL)")
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="dry_run must not be NULL"):
        conn.execute("SELECT errands.import_graphile('graphile_worker', NULL)")
    assert errands_state(conn) == before


def test_roles(gw: str) -> None:
    """Nothing for PUBLIC or web roles; a role that RLS would blind gets an error, not
    an empty import."""
    conn = psycopg.connect(gw, autocommit=True)
    conn.execute("SELECT graphile_worker.add_job('x')")
    conn.execute("DROP ROLE IF EXISTS errands_t_import_web")
    conn.execute("CREATE ROLE errands_t_import_web")
    try:
        conn.execute("SELECT errands.grant_enqueue('errands_t_import_web')")
        assert conn.execute(
            "SELECT has_function_privilege('errands_t_import_web',"
            " 'errands.import_graphile(text, boolean)', 'EXECUTE')"
        ).fetchone() == (False,)
        # Even with EXECUTE and SELECT, a non-owner would read no Graphile rows.
        conn.execute("GRANT USAGE ON SCHEMA errands, graphile_worker TO errands_t_import_web")
        conn.execute("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA errands TO errands_t_import_web")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA graphile_worker TO errands_t_import_web")
        with conn.transaction():
            conn.execute("SET LOCAL ROLE errands_t_import_web")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
                conn.execute("SELECT * FROM errands.import_graphile()")
        assert conn.execute("SELECT count(*) FROM errands._jobs").fetchone() == (0,)
    finally:
        conn.execute("DROP OWNED BY errands_t_import_web")
        conn.execute("DROP ROLE errands_t_import_web")
        conn.close()

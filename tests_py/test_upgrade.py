"""Upgrade in place from schema version 16 (tests_py/fixtures/install_v16.sql, the
install.sql of the last release before the schema was split into sql/schema/ and a
baseline migration), with live jobs, queues, crontab state and workers."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import psycopg
import pytest

import errands
from errands._install import definitions_hash, install_if_needed, migration_ids
from pgtap.cluster import find_psql
from pgtap.snapshot import snapshot

V16 = Path(__file__).resolve().parent / "fixtures" / "install_v16.sql"

DatabaseFactory = Callable[..., AbstractContextManager[str]]

# Every table of the version-16 schema, read whole (ordered), before and after.
TABLES = {
    # The version-16 columns (0020 appends watched, 0021 cancel_reason, 0023 adds
    # waiting_for and recreates is_available last).
    "_jobs": (
        "SELECT id, job_queue_id, task_id, payload::text, priority, run_at, attempts,"
        " max_attempts, last_error, created_at, updated_at, key, locked_at, locked_by,"
        " revision, flags, is_available, timeout FROM errands._jobs ORDER BY id"
    ),
    # The version-16 columns (0019 appends retention).
    "_tasks": "SELECT id, identifier FROM errands._tasks ORDER BY id",
    # The version-16 columns (0022 appends the flow-control columns).
    "_queues": "SELECT id, queue_name, locked_at, locked_by FROM errands._queues ORDER BY id",
    "_known_crontabs": "SELECT * FROM errands._known_crontabs ORDER BY identifier",
    "_crontab_items": "SELECT * FROM errands._crontab_items ORDER BY id",
    "_workers": "SELECT * FROM errands._workers ORDER BY id",
}
# The view's version-16 columns (the upgrade appends state).
V16_VIEW = (
    "SELECT id, queue_name, task_identifier, payload::text, priority, run_at, attempts,"
    " max_attempts, last_error, created_at, updated_at, key, locked_at, locked_by, revision,"
    " flags, timeout FROM errands.jobs ORDER BY id"
)


def _install_v16(dsn: str) -> None:
    run = subprocess.run(
        [find_psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(V16), dsn],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr


def _live_data(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Jobs in every state a version-16 database may hold, a crontab, a worker."""
    ids: dict[str, int] = {}

    def job(name: str, query: str, params: list[Any] | None = None) -> None:
        row = conn.execute(query, params).fetchone()
        assert row is not None
        ids[name] = row[0]

    job("pending", "SELECT id FROM errands.add_job('up_task', '{\"n\": 1}')")
    job(
        "scheduled", "SELECT id FROM errands.add_job('up_task', run_at := now() + interval '1 day')"
    )
    job("keyed", "SELECT id FROM errands.add_job('up_keyed', job_key := 'up:key', priority := 3)")
    job("queued_head", "SELECT id FROM errands.add_job('up_queued', queue_name := 'up_q')")
    job("queued_next", "SELECT id FROM errands.add_job('up_queued', queue_name := 'up_q')")
    job("failed", "SELECT id FROM errands.add_job('up_fail', max_attempts := 1)")
    job("timeout", "SELECT id FROM errands.add_job('up_task', timeout := interval '5 min')")
    conn.execute("SELECT errands.register_worker('up_w', 'host', 42, false)")
    # The queue head runs (its queue is locked); the failing job fails for good.
    (locked,) = conn.execute(
        "SELECT array_agg(id ORDER BY id)"
        " FROM errands.get_jobs('up_w', ARRAY['up_queued', 'up_fail'], 5)"
    ).fetchone() or (None,)
    assert locked == [ids["queued_head"], ids["failed"]]
    conn.execute(
        "SELECT errands.worker_fail_jobs('up_w', ARRAY[%s::bigint], ARRAY['boom'])", [ids["failed"]]
    )
    conn.execute("SELECT errands.set_crontab('*/5 * * * * up_cron ?fill=1h', 'up_source')")
    conn.execute("SELECT errands.cron_tick(date_trunc('hour', now()))")
    return ids


def _tables(conn: psycopg.Connection[Any]) -> dict[str, list[Any]]:
    return {name: conn.execute(query).fetchall() for name, query in TABLES.items()}


def test_upgrade_from_v16_keeps_live_data(empty_db: str, database_factory: DatabaseFactory) -> None:
    _install_v16(empty_db)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert conn.execute("SELECT max(id) FROM errands.migrations").fetchone() == (16,)
        ids = _live_data(conn)
        tables = _tables(conn)
        view = conn.execute(V16_VIEW).fetchall()
        assert tables["_known_crontabs"], "cron_tick recorded the crontab item"

        install_if_needed(conn)  # the definitions hash is missing: installs

        assert _tables(conn) == tables
        assert conn.execute(V16_VIEW).fetchall() == view
        # The running queue head counts against its queue's concurrency (0022).
        assert conn.execute(
            "SELECT concurrency, running FROM errands._queues WHERE queue_name = 'up_q'"
        ).fetchone() == (1, 1)
        states = dict(conn.execute("SELECT id, state FROM errands.jobs").fetchall())
        assert {name: states[i] for name, i in ids.items()} == {
            "pending": "pending",
            "scheduled": "scheduled",
            "keyed": "pending",
            "queued_head": "running",
            "queued_next": "pending",
            "failed": "failed",
            "timeout": "pending",
        }
        assert conn.execute(
            "SELECT array_agg(id ORDER BY id) FROM errands.migrations"
        ).fetchone() == (list(range(1, 16)) + migration_ids(),)  # 1-16, then the new ones
        assert conn.execute("SELECT hash FROM errands.definitions").fetchone() == (
            definitions_hash(),
        )

        # Workers go on: the running job completes and unlocks its queue, whose next
        # job can then be fetched; the registered worker heartbeats.
        assert conn.execute("SELECT errands.heartbeat('up_w')").fetchone() == (True,)
        conn.execute("SELECT errands.set_retention('1 hour')")  # history is off by default
        done = conn.execute(
            "SELECT array_agg(x) FROM errands.worker_complete_jobs('up_w', ARRAY[%s::bigint]) x",
            [ids["queued_head"]],
        ).fetchone()
        assert done == ([ids["queued_head"]],)
        # ... and is kept in the history once a retention is set, with its result.
        assert conn.execute(
            "SELECT errands.worker_complete_jobs('up_w', ARRAY[%s::bigint], ARRAY['[1]'::json])",
            [ids["queued_head"]],
        ).fetchall() == []  # already completed: a no-op
        assert conn.execute(
            "SELECT state, task_identifier, queue_name FROM errands.finished_jobs WHERE id = %s",
            [ids["queued_head"]],
        ).fetchone() == ("completed", "up_queued", "up_q")
        fetched = conn.execute(
            "SELECT array_agg(id ORDER BY id), array_agg(DISTINCT state)"
            " FROM errands.get_jobs('up_w2', ARRAY['up_task', 'up_keyed', 'up_queued'], 10)"
        ).fetchone()
        assert fetched == (
            sorted([ids["pending"], ids["keyed"], ids["queued_next"], ids["timeout"]]),
            ["running"],
        )
        # The retention is folded into a generated function: compare at the default.
        conn.execute("SELECT errands.set_retention('0')")
        upgraded = snapshot(conn)

    with database_factory(prefix="fresh") as fresh, psycopg.connect(fresh, autocommit=True) as c:
        errands.install(c)
        assert snapshot(c) == upgraded


def test_catalogue_of_upgrade_equals_fresh_install(
    empty_db: str, database_factory: DatabaseFactory
) -> None:
    """An empty version-16 database upgraded has exactly a fresh install's catalogue."""
    _install_v16(empty_db)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        errands.install(conn)
        upgraded = snapshot(conn)
    with database_factory(prefix="fresh") as fresh, psycopg.connect(fresh, autocommit=True) as c:
        errands.install(c)
        assert snapshot(c) == upgraded


def test_pre_baseline_database_is_refused(empty_db: str) -> None:
    """A database with migrations below the baseline but not the baseline itself
    (an install older than version 16) cannot be brought forward."""
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA errands; CREATE TABLE errands.migrations (id integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());"
            " INSERT INTO errands.migrations (id, name)"
            " VALUES (1, 'schema'), (11, 'rescue_keeps_place')"
        )
        with pytest.raises(
            psycopg.errors.RaiseException, match="version 11, older than version 16"
        ):
            errands.install(conn)


def test_upgrade_lets_worker_roles_take_their_lock(empty_db: str) -> None:
    """A role given grant_worker on a version-16 database can take its worker lock
    through errands.try_lock_worker (new since) after the upgrade; an enqueue-only
    role cannot."""
    from psycopg import sql

    _install_v16(empty_db)
    base = psycopg.conninfo.conninfo_to_dict(empty_db)["dbname"]
    worker, web = f"{base}_lw", f"{base}_le"
    with psycopg.connect(empty_db, autocommit=True) as conn:
        for role in (worker, web):
            conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        try:
            conn.execute("SELECT errands.grant_worker(%s::regrole)", [worker])
            conn.execute("SELECT errands.grant_enqueue(%s::regrole)", [web])
            errands.install(conn)
            may = "SELECT has_function_privilege(%s, 'errands.try_lock_worker(text)', 'EXECUTE')"
            assert conn.execute(may, [worker]).fetchone() == (True,)
            assert conn.execute(may, [web]).fetchone() == (False,)
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(worker)))
            assert conn.execute("SELECT errands.try_lock_worker('w-up')").fetchone() == (True,)
            conn.execute("RESET ROLE")
        finally:
            conn.execute("RESET ROLE")
            for role in (worker, web):
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_upgrade_lets_enqueue_roles_fire_job_triggers(empty_db: str) -> None:
    """A role given grant_enqueue on a version-16 database can, after the upgrade,
    insert into a table whose errands.job_trigger (new since) enqueues as that role:
    the upgrade grants it the trigger's argument reader; a role without the grant
    still cannot."""
    from psycopg import sql

    _install_v16(empty_db)
    base = psycopg.conninfo.conninfo_to_dict(empty_db)["dbname"]
    web, other = f"{base}_tw", f"{base}_to"
    table = sql.Identifier(f"{base}_signups")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        for role in (web, other):
            conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        try:
            conn.execute("SELECT errands.grant_enqueue(%s::regrole)", [web])
            errands.install(conn)
            conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(table))
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER signup AFTER INSERT ON {} FOR EACH ROW"
                    " EXECUTE FUNCTION errands.job_trigger('signup', 'job_key=signup:{{id}}')"
                ).format(table)
            )
            for role in (web, other):
                conn.execute(
                    sql.SQL("GRANT INSERT ON {} TO {}").format(table, sql.Identifier(role))
                )
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(web)))
            conn.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table))
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(other)))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("INSERT INTO {} VALUES (2)").format(table))
            conn.execute("RESET ROLE")
            keys = conn.execute(
                "SELECT key FROM errands.jobs WHERE task_identifier = 'signup'"
            ).fetchall()
            assert keys == [("signup:1",)]
        finally:
            conn.execute("RESET ROLE")
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            for role in (web, other):
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_upgrade_keeps_web_roles_to_their_grant(empty_db: str) -> None:
    """Roles granted under version 16 keep exactly their grant after the upgrade: the
    enqueue role enqueues but gets no other job's payload back and cannot change the
    payload size limit (its old session setting is ignored); the worker role (SELECT
    on errands.jobs since version 16) still gets payloads. A limit set for the
    database with ALTER DATABASE ... SET errands.max_payload_bytes is carried over."""
    from psycopg import sql

    _install_v16(empty_db)
    base = psycopg.conninfo.conninfo_to_dict(empty_db)["dbname"]
    worker, web = f"{base}_ww", f"{base}_we"
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET errands.max_payload_bytes = 2048").format(
                sql.Identifier(base)
            )
        )
    with psycopg.connect(empty_db, autocommit=True) as conn:
        for role in (worker, web):
            conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        try:
            conn.execute("SELECT errands.grant_worker(%s::regrole)", [worker])
            conn.execute("SELECT errands.grant_enqueue(%s::regrole)", [web])
            conn.execute("SELECT errands.add_job('t', '{\"secret\": 1}', job_key := 'user:1')")
            conn.execute("SELECT errands.add_job('t', '{\"secret\": 2}', job_key := 'user:2')")
            errands.install(conn)
            assert conn.execute("SELECT max_payload_bytes FROM errands._settings").fetchone() == (
                2048,
            )
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(web)))
            conn.execute("SET errands.max_payload_bytes = 0")
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="at most 2048 bytes"):
                conn.execute("SELECT errands.add_job('t', %s::json)", ['"' + "x" * 3000 + '"'])
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT errands.set_max_payload_bytes(0)")
            assert conn.execute(
                "SELECT key, payload FROM errands.remove_job('user:1')"
            ).fetchone() == ("user:1", None)
            conn.execute("RESET errands.max_payload_bytes")
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(worker)))
            assert conn.execute("SELECT payload FROM errands.remove_job('user:2')").fetchone() == (
                {"secret": 2},
            )
            conn.execute("RESET ROLE")
        finally:
            conn.execute("RESET ROLE")
            for role in (worker, web):
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))

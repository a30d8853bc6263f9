"""errands.install / sql/install.sql: generated file is current, idempotent, concurrent-safe."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any

import psycopg
import pytest

import errands
from errands._install import (
    INSTALL_LOCK_KEY,
    Migration,
    definition_files,
    definitions_hash,
    install_if_needed,
    migration_files,
    render_install_sql,
)
from pgtap.cluster import find_psql

ROOT = Path(__file__).resolve().parent.parent
INSTALL_SQL = ROOT / "sql" / "install.sql"


def _latest() -> int:
    return max(mid for mid, _, _ in migration_files())


def _applied(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as c:
        rows = c.execute("SELECT id, name FROM errands.migrations ORDER BY id").fetchall()
    return [(r[0], r[1]) for r in rows]


def _psql_file(path: Path, dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path), dsn],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_committed_install_sql_is_current() -> None:
    assert INSTALL_SQL.is_file(), "sql/install.sql is missing: run `make install-sql`"
    assert INSTALL_SQL.read_text(encoding="utf-8") == render_install_sql(), (
        "sql/install.sql is out of date with sql/migrations/: run `make install-sql`"
    )


def test_migration_files_match_directory() -> None:
    files = migration_files()
    on_disk = sorted(p.name for p in (ROOT / "sql" / "migrations").glob("*.sql"))
    assert [f"{mid:04d}_{name}.sql" for mid, name, _ in files] == on_disk
    ids = [mid for mid, _, _ in files]
    assert ids == sorted(set(ids))
    # The first migration is the baseline: it stands for every id up to its own.
    assert files[0][1] == "baseline"


def test_module_main_prints_installer() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "errands._install"], capture_output=True, text=True, check=True
    )
    assert out.stdout == render_install_sql()
    assert out.stderr == ""


def test_db_fixture_has_errands_installed(conn: psycopg.Connection[Any]) -> None:
    (count,) = conn.execute("SELECT count(*) FROM errands.migrations").fetchone() or (0,)
    assert count == len(migration_files())


def test_install_twice_is_noop(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as c:
        errands.install(c)
        first = _applied(empty_db)
        errands.install(c)
    assert _applied(empty_db) == first
    assert [mid for mid, _ in first] == [mid for mid, _, _ in migration_files()]


def test_install_commits_on_non_autocommit_connection(empty_db: str) -> None:
    c = psycopg.connect(empty_db)  # autocommit off, no explicit commit afterwards
    try:
        errands.install(c)
    finally:
        c.close()
    assert len(_applied(empty_db)) == len(migration_files())


def test_install_async(empty_db: str) -> None:
    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(empty_db) as c:
            await errands.install_async(c)
            await errands.install_async(c)

    asyncio.run(main())
    assert len(_applied(empty_db)) == len(migration_files())


def test_concurrent_installs(empty_db: str) -> None:
    n = 10
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with psycopg.connect(empty_db, autocommit=True) as c:
                barrier.wait(timeout=30)
                errands.install(c)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(_applied(empty_db)) == len(migration_files())


def test_newer_database_is_refused(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as c:
        errands.install(c)
        c.execute("INSERT INTO errands.migrations (id, name) VALUES (9999, 'from_the_future')")
        with pytest.raises(psycopg.errors.RaiseException) as excinfo:
            errands.install(c)
    message = str(excinfo.value)
    assert "9999" in message
    assert f"up to version {_latest()}" in message
    assert "upgrade the errands package" in message

    run = _psql_file(INSTALL_SQL, empty_db)
    assert run.returncode != 0
    assert "9999" in run.stderr
    assert f"up to version {_latest()}" in run.stderr


def test_psql_install(empty_db: str) -> None:
    for _ in range(2):
        run = _psql_file(INSTALL_SQL, empty_db)
        assert run.returncode == 0, run.stderr
    assert len(_applied(empty_db)) == len(migration_files())


SYNTHETIC: list[Migration] = [
    (
        1,
        "functions",
        "-- a comment with a 'quote'\n"
        "CREATE TABLE errands.t (v int);\n"
        "CREATE FUNCTION errands.one() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n"
        "CREATE FUNCTION errands.two() RETURNS int LANGUAGE plpgsql AS $body$\n"
        "BEGIN\n"
        "    RETURN errands.one() + 1;  -- uses a function created just above\n"
        "END\n$body$;\n"
        "DO $$ BEGIN INSERT INTO errands.t VALUES (errands.two()); END $$;\n"
        "INSERT INTO errands.t SELECT v * 50 FROM errands.t;\n",
    ),
    (2, "comment_only", "-- nothing to do\n"),
    (3, "percent", "INSERT INTO errands.t SELECT length(format('%s%%', 'x'));\n"),
]


def test_multi_statement_migrations_with_function_bodies(empty_db: str, tmp_path: Path) -> None:
    """EXECUTE runs whole files: several statements, $$ bodies, DO blocks, comments."""
    with psycopg.connect(empty_db, autocommit=True) as c:
        c.execute(
            render_install_sql(transaction=False, migrations=SYNTHETIC, definitions=[]).encode()
        )
        assert [r[0] for r in c.execute("SELECT v FROM errands.t ORDER BY v")] == [2, 2, 100]
    assert [mid for mid, _ in _applied(empty_db)] == [1, 2, 3]

    script = tmp_path / "install.sql"
    script.write_text(render_install_sql(migrations=SYNTHETIC, definitions=[]))
    with psycopg.connect(empty_db, autocommit=True) as c:
        c.execute("DROP SCHEMA errands CASCADE")
    run = _psql_file(script, empty_db)
    assert run.returncode == 0, run.stderr
    assert [mid for mid, _ in _applied(empty_db)] == [1, 2, 3]


def test_failing_migration_rolls_back_everything(empty_db: str) -> None:
    broken: list[Migration] = [*SYNTHETIC, (4, "broken", "SELECT * FROM no_such_table;\n")]
    with psycopg.connect(empty_db, autocommit=True) as c:
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute(
                render_install_sql(transaction=True, migrations=broken, definitions=[]).encode()
            )
        c.execute("ROLLBACK")
        (exists,) = c.execute("SELECT to_regnamespace('errands') IS NOT NULL").fetchone() or (True,)
    assert not exists


def test_wheel_ships_migrations_and_installs(empty_db: str, tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheel"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir)]
    if shutil.which("hatchling") or _importable("hatchling"):
        cmd.append("--no-build-isolation")
    build = subprocess.run([*cmd, str(ROOT)], capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheel_dir.glob("errands-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "site")
    shipped = sorted(n for n in names if n.startswith("errands/sql/migrations/"))
    assert len(shipped) == len(migration_files()), names
    schema = sorted(n for n in names if n.startswith("errands/sql/schema/"))
    assert [n.rsplit("/", 1)[1] for n in schema] == [name for name, _ in definition_files()]

    # Import errands from the unpacked wheel (not the checkout) and install with it.
    code = (
        "import sys, psycopg, errands, errands._install as i\n"
        f"assert errands.__file__.startswith({str(tmp_path / 'site')!r}), errands.__file__\n"
        "assert i._packaged_dir().is_dir()\n"
        "with psycopg.connect(sys.argv[1], autocommit=True) as c:\n"
        "    errands.install(c)\n"
        "sys.stdout.write(i.render_install_sql())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    run = subprocess.run(
        [sys.executable, "-c", code, empty_db], capture_output=True, text=True, env=env, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == render_install_sql()
    assert len(_applied(empty_db)) == len(migration_files())


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _definitions_state(c: psycopg.Connection[Any]) -> tuple[Any, ...]:
    row = c.execute(
        "SELECT d.hash, d.installed_at, p.xmin::text FROM errands.definitions d,"
        " pg_proc p WHERE p.oid ="
        " 'errands.get_jobs(text, text[], integer, text[], boolean)'::regprocedure"
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_unchanged_definitions_are_skipped(empty_db: str) -> None:
    """A second install neither re-creates the functions nor re-records the hash."""
    with psycopg.connect(empty_db, autocommit=True) as c:
        errands.install(c)
        first = _definitions_state(c)
        assert first[0] == definitions_hash()
        errands.install(c)
        assert _definitions_state(c) == first


def test_changed_definitions_run_again(empty_db: str) -> None:
    """Another recorded hash (an older package's definitions) re-creates every
    definition and re-applies the security pass."""
    with psycopg.connect(empty_db, autocommit=True) as c:
        errands.install(c)
        first = _definitions_state(c)
        c.execute("UPDATE errands.definitions SET hash = 'older'")
        # What CREATE OR REPLACE without the attributes would leave behind:
        c.execute("ALTER FUNCTION errands.heartbeat(text) SECURITY INVOKER RESET search_path")
        c.execute("GRANT EXECUTE ON FUNCTION errands.heartbeat(text) TO PUBLIC")
        install_if_needed(c)
        again = _definitions_state(c)
        assert again[0] == first[0]
        assert again[2] != first[2]
        row = c.execute(
            "SELECT prosecdef, proconfig, has_function_privilege('public', oid, 'EXECUTE')"
            " FROM pg_proc WHERE oid = 'errands.heartbeat(text)'::regprocedure"
        ).fetchone()
    assert row == (True, ["search_path=pg_catalog, pg_temp"], False)


def test_install_if_needed_skips_a_current_schema(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as c:
        install_if_needed(c)
        first = _definitions_state(c)
        c.execute("SELECT pg_advisory_lock(%s)", [INSTALL_LOCK_KEY])
        try:
            # Current: returns without the installer (which would wait for the lock).
            with psycopg.connect(
                empty_db, autocommit=True, options="-c lock_timeout=5s"
            ) as other:
                install_if_needed(other)
        finally:
            c.execute("SELECT pg_advisory_unlock(%s)", [INSTALL_LOCK_KEY])
        assert _definitions_state(c) == first

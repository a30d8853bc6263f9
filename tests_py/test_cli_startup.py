"""What the CLI's start-up loads, and `errands worker --once` deciding on its own
connection that there is nothing to do (the fast path for an empty queue).

Speed itself is measured by bench/run.py (`once.empty`), never asserted here; these
tests pin down what makes it fast (which modules a command imports, no worker started
for an empty queue) and that the fast path does what a worker would have done.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

import errands

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_TASKS = str(ROOT / "examples" / "tasks.py")

#: Costly to import, and not needed by the paths below.
HEAVY = ["psycopg", "psycopg_pool", "typer", "pydantic", "errands.worker", "errands.runner"]

# Runs the CLI in a fresh interpreter and reports its exit status and which of
# HEAVY it imported (as the console script would, without the script wrapper).
_PROBE = """
import json, sys
watch = json.loads(sys.argv[1])
from errands.cli import app
try:
    app(sys.argv[2:], prog_name="errands")
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "imported": [m for m in watch if m in sys.modules]}))
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("PG")}


#: The continuous worker's machinery and the other commands' code: a run-once worker
#: that finds nothing to do has no use for any of it.
MACHINERY = [
    "errands.worker", "errands.runner", "errands.utils", "errands._producer",
    "errands._executor", "errands._reporter", "errands._presence", "errands._turns",
    "errands._local_queue", "errands._heartbeat", "errands._prune", "errands._threads",
    "errands._record", "errands._locks",
    "errands._gc", "errands._embedded", "errands._embedded_os", "errands._cron",
    "psycopg_pool", "pydantic", "rich", "concurrent.futures.thread",
]  # fmt: skip


def run_cli(
    *args: str, watch: list[str] = HEAVY
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(watch), *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stdout, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return report, proc


def imported_by(code: str) -> list[str]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{code}\nimport sys\nprint([m for m in {HEAVY!r} if m in sys.modules])",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    result: list[str] = json.loads(out.replace("'", '"'))
    return result


# --- imports ------------------------------------------------------------------------


def test_import_errands_loads_none_of_the_heavy_modules() -> None:
    assert imported_by("import errands") == []
    # A task module's usual imports need psycopg (Helpers' type) but no pool or worker.
    assert imported_by("from errands import Helpers, task") == ["psycopg"]


def test_every_public_name_resolves_lazily() -> None:
    for name in errands.__all__:
        assert getattr(errands, name) is not None, name
    namespace: dict[str, Any] = {}
    exec("from errands import *", namespace)
    assert set(errands.__all__) <= set(namespace)
    assert errands.Worker.__module__ == "errands.worker"
    assert errands.install.__module__ == "errands._install"
    try:
        errands.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("errands.no_such_name did not raise AttributeError")


def test_help_and_version_import_no_database_code() -> None:
    for args in (["--version"], ["--help"], ["worker", "--help"], ["db", "--help"]):
        report, proc = run_cli(*args)
        assert report["code"] == 0, proc.stderr
        database_code = {"psycopg", "psycopg_pool", "errands.worker", "errands.runner"}
        assert database_code.isdisjoint(report["imported"]), (args, report)


# --- worker --once on an empty queue ---------------------------------------------------------


def test_once_with_nothing_to_run_starts_no_worker(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        # Not runnable now: scheduled later, or a task this worker does not have.
        conn.execute("SELECT errands.add_job('hello', run_at => now() + interval '1 hour')")
        conn.execute("SELECT errands.add_job('not_one_of_ours')")
    report, proc = run_cli("worker", "--once", "--tasks", EXAMPLE_TASKS, "-c", db)
    assert report["code"] == 0, proc.stderr
    assert "errands.worker" not in report["imported"]
    assert "psycopg_pool" not in report["imported"]
    # typer >= 0.29 validates options with pydantic (~150 ms): see pyproject.toml.
    assert "pydantic" not in report["imported"]
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr  # the log lines of a worker that found nothing
    assert " started (tasks: hello, flaky, send_emails, queued_step" in lines[0]
    assert lines[1].endswith(" stopped")
    ids = [re.search(r"worker (worker-[0-9a-f]+) ", line) for line in lines]
    assert ids[0] and ids[1] and ids[0][1] == ids[1][1], lines
    with psycopg.connect(db) as conn:
        jobs = conn.execute(
            "SELECT task_identifier, attempts, locked_at FROM errands.jobs ORDER BY id"
        ).fetchall()
    # The probe's fetch was rolled back: no attempt charged, nothing left locked.
    assert jobs == [("hello", 0, None), ("not_one_of_ours", 0, None)]


def test_once_with_nothing_to_run_loads_no_worker_machinery(db: str) -> None:
    """What ``worker --once`` imports on an empty queue is what its start-up time is
    made of: none of the continuous worker's parts, the pool, the embedded database
    or typer's optional rich/pydantic (bench/run.py's ``once.empty`` times it)."""
    report, proc = run_cli("worker", "--once", "--tasks", EXAMPLE_TASKS, "-c", db, watch=MACHINERY)
    assert report["code"] == 0, proc.stderr
    assert report["imported"] == []
    # The same probe sees the machinery once there is a job to run.
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("""SELECT errands.add_job('hello', '{"name": "m"}')""")
    report, proc = run_cli("worker", "--once", "--tasks", EXAMPLE_TASKS, "-c", db, watch=MACHINERY)
    assert report["code"] == 0, proc.stderr
    assert {"errands.worker", "errands._producer", "psycopg_pool"} <= set(report["imported"])


def test_once_with_a_due_job_runs_it_once(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("""SELECT errands.add_job('hello', '{"name": "probe"}')""")
        conn.execute("SELECT errands.add_job('flaky')")
    report, proc = run_cli("worker", "--once", "--tasks", EXAMPLE_TASKS, "-c", db)
    assert report["code"] == 0, proc.stderr
    assert "errands.worker" in report["imported"]  # found work: the real worker ran
    assert proc.stderr.count("hello, probe!") == 1
    with psycopg.connect(db) as conn:
        left = conn.execute("SELECT task_identifier, attempts FROM errands.jobs").fetchall()
    assert left == [("flaky", 1)]  # one try (fails on its first), not two


def _lock_stale(conn: psycopg.Connection[Any], job_id: int) -> None:
    conn.execute(
        "UPDATE errands._jobs SET locked_at = now() - interval '5 hours', locked_by = 'gone'"
        " WHERE id = %s",
        [job_id],
    )


def test_once_sweeps_stale_locks_like_a_worker(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        theirs = conn.execute("SELECT id FROM errands.add_job('not_one_of_ours')").fetchone()
        assert theirs is not None
        _lock_stale(conn, theirs[0])
    # Nothing of ours is runnable: the fast path's sweep is committed.
    report, proc = run_cli("worker", "--once", "--tasks", EXAMPLE_TASKS, "-c", db)
    assert report["code"] == 0, proc.stderr
    assert "errands.worker" not in report["imported"]
    assert "reset 1 job(s) whose lock had expired" in proc.stderr
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT locked_at, last_error FROM errands.jobs").fetchone()
    assert row is not None and row[0] is None and "presumed dead" in row[1]

    # A stale job of ours: the sweep makes it runnable, so the worker runs it.
    with psycopg.connect(db, autocommit=True) as conn:
        mine = conn.execute("""SELECT id FROM errands.add_job('hello', '{"name": "s"}')""")
        row = mine.fetchone()
        assert row is not None
        _lock_stale(conn, row[0])
    report, proc = run_cli("worker", "--once", "--tasks", EXAMPLE_TASKS, "-c", db)
    assert report["code"] == 0, proc.stderr
    assert proc.stderr.count("reset 1 job(s) whose lock had expired") == 1, proc.stderr
    assert "hello, s!" in proc.stderr
    with psycopg.connect(db) as conn:
        left = conn.execute("SELECT task_identifier FROM errands.jobs").fetchall()
    assert left == [("not_one_of_ours",)]


def test_once_without_the_schema_fails_in_one_line(empty_db: str) -> None:
    report, proc = run_cli(
        "worker", "--once", "--no-install", "--tasks", EXAMPLE_TASKS, "-c", empty_db
    )
    assert report["code"] == 1
    assert proc.stderr.startswith('errands: error 3F000: schema "errands" does not exist')
    assert proc.stderr.count("\n") == 1

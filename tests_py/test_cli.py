"""The `errands` command line against a real PostgreSQL (`-c <dsn>` of a fresh database).

Most commands run in-process through typer's CliRunner; the worker and the error
output of the installed console script run as subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
from typer.testing import CliRunner, Result

from errands._install import migration_files
from errands.cli import app

LATEST = migration_files()[-1][0]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_TASKS = ROOT / "examples" / "tasks.py"
ERRANDS = str(Path(sys.executable).with_name("errands"))
UNREACHABLE = "postgresql://errands@127.0.0.1:1/nowhere?connect_timeout=5"


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout


def assert_error(result: Result, message: str) -> None:
    """Exit status 1, one `errands: ...` line on stderr containing ``message``."""
    assert isinstance(result.exception, SystemExit | None), result.exception  # no crash
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("errands: "), lines
    assert message in lines[0], lines[0]


def add(dsn: str, *args: str) -> dict[str, Any]:
    job: dict[str, Any] = json.loads(ok(cli("add", *args, "-c", dsn)))
    return job


def listed(dsn: str, *args: str) -> list[dict[str, Any]]:
    out = ok(cli("jobs", "--json", *args, "-c", dsn))
    return [json.loads(line) for line in out.splitlines()]


def errands_process(
    *args: str, cwd: Path = ROOT, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("PG")}
    return subprocess.run(
        [ERRANDS, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- install and connections -------------------------------------------------------------


def test_install(empty_db: str) -> None:
    expected = f"errands schema installed (version {LATEST})"
    assert ok(cli("install", "-c", empty_db)).strip() == expected
    assert ok(cli("install", "--connection", empty_db)).startswith("errands schema installed")
    with psycopg.connect(empty_db) as conn:
        (count,) = conn.execute("SELECT count(*) FROM errands.migrations").fetchone() or (0,)
    assert count == len(migration_files())  # numbers may have gaps


def test_database_url_is_used_without_c(db: str) -> None:
    result = cli("jobs", env={"DATABASE_URL": db})
    assert ok(result).strip() == "no jobs"
    assert "embedded" not in result.stderr


def test_pg_variables_are_used_with_pghost(db: str) -> None:
    params = psycopg.conninfo.conninfo_to_dict(db)
    env = {
        "DATABASE_URL": "",
        "PGHOST": str(params["host"]),
        "PGPORT": str(params["port"]),
        "PGUSER": str(params["user"]),
        "PGDATABASE": str(params["dbname"]),
    }
    add(db, "hello")
    out = ok(cli("jobs", "--json", env=env))
    assert [json.loads(line)["task_identifier"] for line in out.splitlines()] == ["hello"]


def test_connection_errors() -> None:
    assert_error(cli("jobs", "-c", "not a valid dsn"), "invalid connection string")
    assert_error(cli("jobs", "-c", UNREACHABLE), "cannot connect to the database")
    assert_error(cli("install", "-c", UNREACHABLE), "cannot connect to the database")


def test_missing_schema_hints_at_install(empty_db: str) -> None:
    result = cli("jobs", "-c", empty_db)
    assert_error(result, "error 42P01")
    assert "errands install" in result.stderr


def test_unknown_option_is_a_usage_error(db: str) -> None:
    result = cli("jobs", "--frobnicate", "-c", db)
    assert result.exit_code == 2
    assert "--frobnicate" in result.output
    assert cli("jobs", "--state", "bogus", "-c", db).exit_code == 2


def test_help_lists_every_command() -> None:
    out = ok(cli("--help"))
    for command in ("install", "worker", "add", "jobs", "retry", "remove", "cleanup", "db"):
        assert command in out
    assert "start" in ok(cli("db", "--help"))


def test_help_lists_the_commands_in_their_usual_order() -> None:
    order = ["install", "worker", "add", "jobs", "retry", "remove", "cleanup", "cancel", "wait",
             "workers", "queues", "import-graphile", "dashboard",
             "db", "cron", "flow", "queue", "task"]  # fmt: skip
    commands = ok(cli("--help")).split("Commands")[1]
    listed = re.findall(r"^│ (\S+)", commands, flags=re.MULTILINE)  # not wrapped lines
    assert listed == order


def test_python_dash_m_runs_the_cli() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "errands.cli", "--version"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("errands 0.")


# --- add ------------------------------------------------------------------------------


def test_add_with_every_option(db: str) -> None:
    job = add(
        db, "send_email", "--payload", '{"to": "ada@example.com"}', "--queue", "mail",
        "--run-at", "2031-02-03T04:05:06Z", "--max-attempts", "3", "--job-key", "k1",
        "--job-key-mode", "preserve_run_at", "--priority", "-5", "--flag", "slow",
        "--flag", "big", "--timeout", "2.5",
    )  # fmt: skip
    assert job["task_identifier"] == "send_email"
    assert job["payload"] == {"to": "ada@example.com"}
    assert job["queue_name"] == "mail"
    assert datetime.fromisoformat(job["run_at"]) == datetime(
        2031, 2, 3, 4, 5, 6, tzinfo=timezone.utc
    )
    assert (job["max_attempts"], job["key"], job["priority"]) == (3, "k1", -5)
    assert job["flags"] == ["big", "slow"]
    assert job["timeout"] == 2.5  # seconds
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT payload, key FROM errands.jobs WHERE id = %s", [job["id"]])
        assert row.fetchone() == ({"to": "ada@example.com"}, "k1")
    # Same key again (replace mode): the same job, updated.
    again = add(db, "send_email", "--job-key", "k1", "--payload", "[1]")
    assert again["id"] == job["id"] and again["revision"] == 1 and again["payload"] == [1]


def test_add_defaults(db: str) -> None:
    job = add(db, "hello")
    assert job["payload"] == {} and job["max_attempts"] == 25 and job["priority"] == 0
    assert job["queue_name"] is None and job["flags"] is None
    run_at = datetime.fromisoformat(job["run_at"])
    assert abs(run_at - datetime.now(timezone.utc)) < timedelta(minutes=1)


def test_add_naive_run_at_is_local_time(db: str) -> None:
    local = datetime(2032, 6, 1, 12, 0, 0)
    job = add(db, "later", "--run-at", local.isoformat())
    assert datetime.fromisoformat(job["run_at"]) == local.astimezone()


def test_add_errors(db: str) -> None:
    assert_error(cli("add", "x", "--payload", "{nope", "-c", db), "invalid --payload JSON")
    assert_error(cli("add", "x", "--run-at", "next tuesday", "-c", db), "invalid --run-at")
    assert_error(
        cli("add", "x", "--job-key", "k", "--job-key-mode", "x", "-c", db),
        "errands: error 22023: errands: invalid job_key_mode 'x'",
    )
    assert_error(
        cli("add", "x", "--priority", "40000", "-c", db),
        "error 22023: errands: priority must be between -32768 and 32767, got 40000",
    )
    assert_error(
        cli("add", "x", "--timeout", "0", "-c", db),
        "error 22023: errands: timeout must be positive, got 00:00:00",
    )
    assert_error(cli("add", "x", "--timeout", "inf", "-c", db), "invalid --timeout")
    assert listed(db) == []


# --- jobs -------------------------------------------------------------------------------


def _jobs_in_every_state(conn: psycopg.Connection[Any]) -> dict[str, int]:
    def one(query: str) -> int:
        row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])

    ids = {
        "pending": one("SELECT id FROM errands.add_job('t_pending', queue_name => 'q1')"),
        "scheduled": one(
            "SELECT id FROM errands.add_job('t_scheduled', run_at => now() + interval '1 hour')"
        ),
        "running": one("SELECT id FROM errands.add_job('t_running')"),
        "retrying": one("SELECT id FROM errands.add_job('t_retrying')"),
        "failed": one("SELECT id FROM errands.add_job('t_failed', max_attempts => 1)"),
    }
    conn.execute("SELECT errands.get_jobs('w1', ARRAY['t_running', 't_retrying', 't_failed'], 10)")
    conn.execute(
        "SELECT errands.worker_fail_jobs('w1', %s, ARRAY['Boom: the first try failed', %s])",
        [[ids["retrying"], ids["failed"]], "Fatal: " + "x" * 100],
    )
    return ids


def test_jobs_states_and_filters(db: str, conn: psycopg.Connection[Any]) -> None:
    ids = _jobs_in_every_state(conn)
    by_state = {j["state"]: j for j in listed(db)}
    assert {s: j["id"] for s, j in by_state.items()} == ids
    assert by_state["retrying"]["last_error"] == "Boom: the first try failed"
    assert by_state["running"]["locked_by"] == "w1"

    for state, job_id in ids.items():
        assert [j["id"] for j in listed(db, "--state", state)] == [job_id]
    assert [j["id"] for j in listed(db, "--task", "t_failed")] == [ids["failed"]]
    assert [j["id"] for j in listed(db, "--queue", "q1")] == [ids["pending"]]
    assert listed(db, "--task", "nope") == []

    table = ok(cli("jobs", "-c", db)).splitlines()
    assert table[0].split() == ["ID", "TASK", "QUEUE", "STATE", "ATTEMPTS", "RUN_AT", "LAST_ERROR"]
    assert len(table) == 6
    failed_line = next(line for line in table if "t_failed" in line)
    assert " failed " in failed_line and " 1/1 " in failed_line
    assert failed_line.endswith("...") and len(failed_line) < 160  # last_error truncated
    retrying_line = next(line for line in table if "t_retrying" in line)
    assert "1/25" in retrying_line and "Boom: the first try failed" in retrying_line


def test_jobs_limit(db: str) -> None:
    for _ in range(3):
        add(db, "hello")
    result = cli("jobs", "--json", "--limit", "2", "-c", db)
    assert len(ok(result).splitlines()) == 2
    assert "showing the first 2 jobs" in result.stderr
    assert len(listed(db, "--limit", "0")) == 3
    assert ok(cli("jobs", "--state", "failed", "-c", db)).strip() == "no jobs"


# --- retry, remove, cleanup ------------------------------------------------------------------


def test_retry(db: str, conn: psycopg.Connection[Any]) -> None:
    ids = _jobs_in_every_state(conn)
    out = ok(cli("retry", str(ids["failed"]), str(ids["retrying"]), "-c", db))
    assert out.strip() == "retried 2 jobs"
    jobs = {j["id"]: j for j in listed(db)}
    for job_id in (ids["failed"], ids["retrying"]):
        assert jobs[job_id]["state"] == "pending"
        assert jobs[job_id]["attempts"] == 0

    result = cli("retry", str(ids["running"]), "999999", "-c", db)
    assert result.stdout.strip() == "retried 0 jobs"
    assert_error(result, f"not retried (no such job, or it is running): {ids['running']}, 999999")


def test_remove(db: str, conn: psycopg.Connection[Any]) -> None:
    job = add(db, "hello", "--job-key", "greeting")
    removed = json.loads(ok(cli("remove", "greeting", "-c", db)))
    assert removed["id"] == job["id"]
    assert listed(db) == []
    assert_error(cli("remove", "greeting", "-c", db), "no job with key 'greeting'")

    running = add(db, "busy", "--job-key", "busy-key")
    conn.execute("SELECT errands.get_jobs('w1', ARRAY['busy'])")
    result = cli("remove", "busy-key", "-c", db)
    assert json.loads(ok(result))["id"] == running["id"]
    assert "is running" in result.stderr
    (left,) = listed(db)
    assert left["key"] is None and left["attempts"] == left["max_attempts"]


def test_cleanup(db: str, conn: psycopg.Connection[Any]) -> None:
    ids = _jobs_in_every_state(conn)
    conn.execute("SELECT errands.add_job('gone', queue_name => 'q2')")
    conn.execute("SELECT errands.complete_jobs(ARRAY(SELECT id FROM errands.jobs"
                 " WHERE task_identifier = 'gone'))")  # fmt: skip
    assert ok(cli("cleanup", "-c", db)).strip() == "GC_JOB_QUEUES: deleted 1"
    out = ok(
        cli("cleanup", "--task", "delete_permafailed_jobs", "--task", "GC_TASK_IDENTIFIERS",
            "--keep", "gone", "-c", db)
    ).splitlines()  # fmt: skip
    # t_failed's job and then its task row go; 'gone' is kept.
    assert out == ["DELETE_PERMAFAILED_JOBS: deleted 1", "GC_TASK_IDENTIFIERS: deleted 1"]
    assert ids["failed"] not in {j["id"] for j in listed(db)}
    assert_error(
        cli("cleanup", "--task", "VACUUM_EVERYTHING", "-c", db),
        "error 22023: errands: unknown cleanup task 'VACUUM_EVERYTHING'",
    )


# --- worker -----------------------------------------------------------------------------


def test_worker_errors(tmp_path: Path) -> None:
    assert_error(
        cli("worker", "--tasks", "no_such_module_xyz", "-c", UNREACHABLE),
        "no module named 'no_such_module_xyz'",
    )
    assert_error(
        cli("worker", "--tasks", str(tmp_path / "missing.py"), "-c", UNREACHABLE),
        "no task file or directory",
    )
    for name in ("a", "b"):
        (tmp_path / f"{name}.py").write_text(
            "from errands.tasks import task\n\n@task\ndef dup(payload, helpers):\n    pass\n"
        )
    assert_error(
        cli("worker", "--tasks", str(tmp_path / "a.py"), "--tasks", str(tmp_path / "b.py"),
            "-c", UNREACHABLE),
        "duplicate task identifier 'dup'",
    )  # fmt: skip
    (tmp_path / "empty.py").write_text("X = 1\n")
    assert_error(
        cli("worker", "--tasks", str(tmp_path / "empty.py"), "-c", UNREACHABLE),
        "no @task functions found",
    )
    assert_error(
        cli("worker", "--tasks", str(EXAMPLE_TASKS), "--crontab", "no-crontab", "-c", UNREACHABLE),
        "cannot read crontab 'no-crontab'",
    )
    assert_error(
        cli("worker", "--tasks", str(EXAMPLE_TASKS), "--once", "-c", UNREACHABLE),
        "cannot connect to the database",
    )
    assert cli("worker", "-c", UNREACHABLE).exit_code == 2  # --tasks is required


def test_worker_once_runs_the_examples(db: str) -> None:
    add(db, "hello", "--payload", '{"name": "tests"}')
    add(db, "flaky")
    emails = add(db, "send_emails", "--payload", '["a@example.com", "bounce@example.com"]')
    for step in (1, 2, 3):
        add(
            db, "queued_step", "--queue", "serial-demo", "--payload", f'{{"step": {step}, "of": 3}}'
        )

    run = errands_process("worker", "--once", "--tasks", "examples/tasks.py", "-c", db)
    assert run.returncode == 0, run.stderr
    assert "hello, tests!" in run.stderr
    steps = [line.split("] ", 1)[1] for line in run.stderr.splitlines() if "queued_step #" in line
             and "] step" in line]  # fmt: skip
    assert steps == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]

    # hello and the queue are done; flaky and the batch's failed item wait to retry.
    left = {j["task_identifier"]: j for j in listed(db)}
    assert set(left) == {"flaky", "send_emails"}
    assert all(j["state"] == "retrying" and j["attempts"] == 1 for j in left.values())
    assert left["send_emails"]["id"] == emails["id"]
    assert left["send_emails"]["payload"] == ["bounce@example.com"]
    assert "mailbox of bounce@example.com is full" in left["send_emails"]["last_error"]

    # Due now (the backoff skipped), their second attempts succeed.
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "SELECT errands.reschedule_jobs(%s, run_at => now())",
            [[j["id"] for j in left.values()]],
        )
    run = errands_process("worker", "--once", "--quiet", "--tasks", "examples/tasks.py", "-c", db)
    assert run.returncode == 0, run.stderr
    assert "succeeded" not in run.stderr  # --quiet
    assert listed(db) == []


def test_worker_installs_the_schema_and_logs_json(empty_db: str, tmp_path: Path) -> None:
    run = errands_process(
        "worker", "--once", "--tasks", str(EXAMPLE_TASKS), "--log-format", "json", "-j", "2",
        "-c", empty_db, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stderr.splitlines()]
    assert {r["logger"] for r in records} >= {"errands.worker"}
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT max(id) FROM errands.migrations").fetchone() == (LATEST,)


def test_worker_no_install_does_not_install(empty_db: str, tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(
        "from errands.tasks import task\n\n@task\ndef noop(payload, helpers):\n    pass\n"
    )
    # Modules of the current directory are importable by name, as with `python -m`.
    run = errands_process(
        "worker", "--once", "--no-install", "--tasks", "tasks", "-c", empty_db,
        cwd=tmp_path, timeout=30,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1].startswith(
        'errands: error 3F000: schema "errands" does not exist'
    ), run.stderr
    assert "errands install" in run.stderr


def test_console_script_errors_are_one_line(db: str) -> None:
    run = errands_process("add", "x", "--payload", "{", "-c", db)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("errands: invalid --payload")
    run = errands_process("jobs", "-c", UNREACHABLE)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1


def test_version_and_usage_errors() -> None:
    assert ok(cli("--version")).startswith("errands 0.")
    assert cli("nonsense-command").exit_code == 2
    assert cli().exit_code in (0, 2)  # no command: help
    assert "Usage" in cli().output


# --- workers ------------------------------------------------------------------------------


def test_workers_lists_state_and_running_jobs(db: str) -> None:
    assert ok(cli("workers", "-c", db)).strip() == "no workers"
    with psycopg.connect(db, autocommit=True) as alive:
        # A live worker holds the advisory lock on its id in some session.
        alive.execute("SELECT pg_advisory_lock(errands._worker_lock_key('w-alive'))")
        alive.execute("SELECT errands.register_worker('w-alive', 'host-a', 11)")
        alive.execute("SELECT errands.register_worker('w-dead', 'host-b', 22)")
        alive.execute("SELECT errands.add_job('t')")
        (job_id,) = alive.execute("SELECT id FROM errands.get_jobs('w-alive', '{t}', 1)").fetchone()
        table = ok(cli("workers", "-c", db))
        lines = {line.split()[0]: line for line in table.splitlines()[1:]}
        assert "alive" in lines["w-alive"] and str(job_id) in lines["w-alive"]
        assert "host-a:11" in lines["w-alive"]
        assert "dead" in lines["w-dead"]
        rows = [json.loads(line) for line in ok(cli("workers", "--json", "-c", db)).splitlines()]
        by_id = {r["id"]: r for r in rows}
        assert by_id["w-alive"]["running_job_ids"] == [job_id]
        assert by_id["w-dead"]["state"] == "dead" and by_id["w-dead"]["running_job_ids"] == []

"""The job commands: ``add``, ``jobs``, ``retry``, ``remove`` and ``cleanup``."""

import json
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from errands.cli._app import app
from errands.cli._common import (
    AsJson,
    Connection,
    _connect,
    _fail,
    _handle_errors,
    resolve_conninfo,
)
from errands.cli._format import _format_time, _job_json, _table, _truncate

if TYPE_CHECKING:
    import psycopg

    from errands.job import JobKeyMode


@app.command("add")
@_handle_errors
def add_cmd(
    identifier: Annotated[str, typer.Argument(help="The task identifier.")],
    payload: Annotated[
        str | None, typer.Option("--payload", "-p", metavar="JSON", help="The job's payload.")
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option("--queue", "-q", help="A named queue: its jobs run one at a time."),
    ] = None,
    run_at: Annotated[
        str | None,
        typer.Option(
            "--run-at",
            metavar="ISO",
            help="When to run, ISO 8601 (default: now; local time when no offset is given).",
        ),
    ] = None,
    max_attempts: Annotated[
        int | None, typer.Option("--max-attempts", help="Attempts before giving up (default 25).")
    ] = None,
    job_key: Annotated[
        str | None, typer.Option("--job-key", "-k", help="Replace/dedupe by this key.")
    ] = None,
    job_key_mode: Annotated[
        str | None,
        typer.Option(
            "--job-key-mode",
            help="replace (default), preserve_run_at, unsafe_dedupe or abort_replace.",
        ),
    ] = None,
    priority: Annotated[
        int | None, typer.Option("--priority", help="Lower runs first (default 0).")
    ] = None,
    flag: Annotated[
        list[str] | None,
        typer.Option("--flag", "-f", help="A flag workers can forbid. Repeatable."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help="Each try of this job may run this long (overrides the task's timeout).",
        ),
    ] = None,
    connection: Connection = None,
) -> None:
    """Add a job; prints it as JSON."""
    parsed_payload: Any = None
    if payload is not None:
        try:
            parsed_payload = json.loads(payload)
        except ValueError as exc:
            _fail(f"invalid --payload JSON: {exc}")
        except RecursionError:
            _fail("invalid --payload JSON: nested too deeply")
    when = _parse_time(run_at) if run_at is not None else None
    limit: timedelta | None = None
    if timeout is not None:
        try:
            limit = timedelta(seconds=timeout)
        except (OverflowError, ValueError):
            _fail(f"invalid --timeout {timeout!r}: expected a number of seconds")
    from errands import _queries
    from errands.enqueue import add_job_params

    params = add_job_params(
        identifier, queue_name=queue, run_at=when, max_attempts=max_attempts, job_key=job_key,
        priority=priority, flags=flag or None, timeout=limit,
        # Any word: errands.add_job rejects an unknown mode with its own message.
        job_key_mode=cast("JobKeyMode | None", job_key_mode),
    )  # fmt: skip
    if payload is not None:  # as given, a JSON null too (no payload: the SQL default)
        params["payload"] = json.dumps(parsed_payload)
    # One transaction: a job whose row cannot be read back (e.g. a run_at before
    # year 1 in UTC) is not left behind by a failed command.
    with _connect(resolve_conninfo(connection)) as conn, conn.transaction():
        row = conn.execute(_queries.ADD_JOB, params).fetchone()
    if row is None or row["id"] is None:
        _fail("add_job returned no job")
    typer.echo(_job_json(row))


def _parse_time(text: str) -> datetime:
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo is not None else parsed.astimezone()
    except (ValueError, OverflowError):
        _fail(f"invalid --run-at {text!r}: expected an ISO 8601 time, e.g. 2030-01-31T09:00:00Z")


# --- job states: the words `errands jobs` shows, and the one place that filters on them


class JobState(str, Enum):
    """The states of ``errands.jobs.state`` (computed in SQL: sql/schema/10_jobs.sql)."""

    scheduled = "scheduled"
    pending = "pending"
    running = "running"
    waiting = "waiting"
    retrying = "retrying"
    failed = "failed"


def _jobs_in_state(
    conn: "psycopg.Connection[dict[str, Any]]",
    state: JobState | None,
    *,
    task: str | None,
    queue: str | None,
    limit: int | None,
) -> list[dict[str, Any]]:
    """Rows of ``errands.jobs`` with a ``state`` column, those in ``state`` (all when
    ``None``), of ``task`` and ``queue`` when given, by id, at most ``limit``."""
    from errands import _queries

    params = {
        "state": state.value if state is not None else None,
        "task": task,
        "queue": queue,
        "limit": limit,
    }
    return conn.execute(_queries.JOBS_WITH_STATE, params).fetchall()


@app.command("jobs")
@_handle_errors
def jobs_cmd(
    state: Annotated[
        JobState | None,
        typer.Option("--state", "-s", case_sensitive=False, help="Only jobs in this state."),
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", "-t", help="Only jobs of this task.")
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Only jobs of this queue.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="At most this many jobs (0: all).")
    ] = 50,
    as_json: AsJson = False,
    connection: Connection = None,
) -> None:
    """List jobs: scheduled, pending, running, retrying and failed (no attempts left)."""
    with _connect(resolve_conninfo(connection)) as conn:
        rows = _jobs_in_state(
            conn, state, task=task, queue=queue, limit=limit + 1 if limit else None
        )
    more = bool(limit) and len(rows) > limit
    if more:
        rows = rows[:limit]
    if as_json:
        for row in rows:
            typer.echo(_job_json(row))
    elif not rows:
        typer.echo("no jobs")
    else:
        table = [
            [
                str(r["id"]),
                r["task_identifier"],
                r["queue_name"] or "",
                r["state"],
                f"{r['attempts']}/{r['max_attempts']}",
                _format_time(r["run_at"]),
                _truncate(r["last_error"], 60),
            ]
            for r in rows
        ]
        headers = ["ID", "TASK", "QUEUE", "STATE", "ATTEMPTS", "RUN_AT", "LAST_ERROR"]
        typer.echo(_table(headers, table))
    if more:
        typer.echo(f"errands: showing the first {limit} jobs (--limit N to see more)", err=True)


@app.command("retry")
@_handle_errors
def retry_cmd(
    ids: Annotated[list[int], typer.Argument(metavar="ID...", help="Job ids.")],
    connection: Connection = None,
) -> None:
    """Make jobs due now with a fresh set of attempts (e.g. failed or retrying ones)."""
    from errands import _queries

    with _connect(resolve_conninfo(connection)) as conn:
        done = {r["id"] for r in conn.execute(_queries.RETRY_JOBS, {"ids": ids}).fetchall()}
    typer.echo(f"retried {len(done)} job{'' if len(done) == 1 else 's'}")
    missing = [str(i) for i in dict.fromkeys(ids) if i not in done]
    if missing:
        _fail(f"not retried (no such job, or it is running): {', '.join(missing)}")


@app.command("remove")
@_handle_errors
def remove_cmd(
    key: Annotated[str, typer.Argument(help="The job key.")],
    connection: Connection = None,
) -> None:
    """Remove the job with this job key; prints it as JSON."""
    from errands import _queries

    with _connect(resolve_conninfo(connection)) as conn:
        row = conn.execute(_queries.REMOVE_JOB, {"job_key": key}).fetchone()
    if row is None or row["id"] is None:
        _fail(f"no job with key {key!r}")
    typer.echo(_job_json(row))
    if row["locked_at"] is not None:
        typer.echo(
            f"errands: job {row['id']} is running: it finishes but will not be retried", err=True
        )


@app.command("cleanup")
@_handle_errors
def cleanup_cmd(
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            metavar="TASK",
            help="DELETE_PERMAFAILED_JOBS, GC_JOB_QUEUES or GC_TASK_IDENTIFIERS. "
            "Repeatable. Default: GC_JOB_QUEUES.",
        ),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", metavar="IDENT", help="Task identifier GC_TASK_IDENTIFIERS keeps."),
    ] = None,
    connection: Connection = None,
) -> None:
    """Housekeeping: delete failed jobs (no attempts left), unused queues and task identifiers."""
    tasks = [t.upper() for t in task] if task else ["GC_JOB_QUEUES"]
    from errands import _queries

    with _connect(resolve_conninfo(connection)) as conn:
        rows = conn.execute(_queries.CLEANUP, {"tasks": tasks, "keep": keep or []}).fetchall()
    for r in rows:
        typer.echo(f"{r['task']}: deleted {r['deleted']}")

"""``errands queue ...``, ``errands task ...`` and ``errands queues``: flow control.

Each command is one call of the SQL function of the same name
(``errands.set_queue_limits``, ``errands.pause_queue``, ...); a NAME may be a
``'prefix*'`` pattern (every matching queue or task, each limited on its own).
"""

import json
from typing import Annotated, Any

import typer

from errands.cli._app import app
from errands.cli._common import AsJson, Connection, _connect, _handle_errors, resolve_conninfo
from errands.cli._format import _json_default, _table

queue_app = typer.Typer(help="Limit, pause and resume a named queue.", no_args_is_help=True)
app.add_typer(queue_app, name="queue")
task_app = typer.Typer(help="Limit, pause and resume a task.", no_args_is_help=True)
app.add_typer(task_app, name="task")

Name = Annotated[str, typer.Argument(metavar="NAME", help="A name, or a 'prefix*' pattern.")]
Concurrency = Annotated[
    int | None,
    typer.Option("--concurrency", metavar="N", help="At most N jobs at once across all workers."),
]
Rate = Annotated[
    int | None, typer.Option("--rate", metavar="N", help="At most N starts per --per seconds.")
]
Per = Annotated[
    float | None, typer.Option("--per", metavar="S", help="The rate window, in seconds.")
]


def _call(connection: str | None, query_name: str, params: dict[str, Any]) -> None:
    from errands import _queries

    with _connect(resolve_conninfo(connection)) as conn:
        conn.execute(getattr(_queries, query_name), params)


def _limits(name: str, concurrency: int | None, rate: int | None, per: float | None) -> Any:
    from datetime import timedelta

    from errands.limits import Limits

    period = None if per is None else timedelta(seconds=per)
    return Limits(concurrency, rate, period).params(name)


@queue_app.command("limit")
@_handle_errors
def queue_limit_cmd(
    name: Name,
    concurrency: Concurrency = None,
    rate: Rate = None,
    per: Per = None,
    connection: Connection = None,
) -> None:
    """Set a queue's limits; an option left out removes that limit (concurrency
    then falls back to 1: a serial queue)."""
    _call(connection, "SET_QUEUE_LIMITS", _limits(name, concurrency, rate, per))
    typer.echo(f"queue {name}: limits set")


@queue_app.command("pause")
@_handle_errors
def queue_pause_cmd(name: Name, connection: Connection = None) -> None:
    """Start no job of the queue until it is resumed (running jobs finish)."""
    _call(connection, "PAUSE_QUEUE", {"name": name})
    typer.echo(f"queue {name}: paused")


@queue_app.command("resume")
@_handle_errors
def queue_resume_cmd(name: Name, connection: Connection = None) -> None:
    """Resume a paused queue; workers wake at once."""
    _call(connection, "RESUME_QUEUE", {"name": name})
    typer.echo(f"queue {name}: resumed")


@task_app.command("limit")
@_handle_errors
def task_limit_cmd(
    name: Name,
    concurrency: Concurrency = None,
    rate: Rate = None,
    per: Per = None,
    connection: Connection = None,
) -> None:
    """Set a task's limits (all its jobs, in any queue); an option left out
    removes that limit."""
    _call(connection, "SET_TASK_LIMITS", _limits(name, concurrency, rate, per))
    typer.echo(f"task {name}: limits set")


@task_app.command("pause")
@_handle_errors
def task_pause_cmd(name: Name, connection: Connection = None) -> None:
    """Start no job of the task until it is resumed (running jobs finish)."""
    _call(connection, "PAUSE_TASK", {"name": name})
    typer.echo(f"task {name}: paused")


@task_app.command("resume")
@_handle_errors
def task_resume_cmd(name: Name, connection: Connection = None) -> None:
    """Resume a paused task; workers wake at once."""
    _call(connection, "RESUME_TASK", {"name": name})
    typer.echo(f"task {name}: resumed")


def _rate(row: dict[str, Any]) -> str:
    if row["rate_limit"] is None:
        return ""
    return f"{row['rate_limit']}/{row['rate_period'].total_seconds():g}s"


@app.command("queues")
@_handle_errors
def queues_cmd(as_json: AsJson = False, connection: Connection = None) -> None:
    """List named queues (limits, pause, running jobs, backlog) and task limits."""
    from errands import _queries

    with _connect(resolve_conninfo(connection)) as conn:
        queues = conn.execute(_queries.QUEUES).fetchall()
        tasks = conn.execute(_queries.TASK_LIMITS).fetchall()
    if as_json:
        for row in queues:
            typer.echo(json.dumps({"kind": "queue", **row}, default=_json_default))
        for row in tasks:
            typer.echo(json.dumps({"kind": "task", **row}, default=_json_default))
        return
    if not queues and not tasks:
        typer.echo("no named queues and no task limits")
        return
    headers = ["KIND", "NAME", "CONCURRENCY", "RATE", "PAUSED", "RUNNING", "BACKLOG"]
    rows = [
        ["queue", r["queue_name"], str(r["concurrency"]), _rate(r),
         "yes" if r["paused"] else "", str(r["running"]), str(r["backlog"])]
        for r in queues
    ] + [
        ["task", r["task_identifier"], "" if r["concurrency"] is None else str(r["concurrency"]),
         _rate(r), "yes" if r["paused"] else "",
         "" if r["running"] is None else str(r["running"]), ""]
        for r in tasks
    ]  # fmt: skip
    typer.echo(_table(headers, rows))

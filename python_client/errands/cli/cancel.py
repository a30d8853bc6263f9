"""``errands cancel``: cancel jobs by id, or every unfinished job of a task."""

from typing import Annotated

import typer

from errands.cli._app import app
from errands.cli._common import Connection, _connect, _fail, _handle_errors, resolve_conninfo
from errands.cli.jobs import JobState

# How each outcome of errands.cancel_jobs reads in the summary.
_WORDS = {
    "cancelled": "cancelled",
    "cancel_requested": "running, cancellation requested",
    "already_finished": "already finished",
    "unknown": "unknown",
}


@app.command("cancel")
@_handle_errors
def cancel_cmd(
    ids: Annotated[
        list[int] | None, typer.Argument(metavar="[ID...]", help="Job ids.", show_default=False)
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="Cancel the unfinished jobs of this task.")
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", help="With --task: only jobs of this queue.")
    ] = None,
    state: Annotated[
        JobState | None,
        typer.Option(
            "--state", "-s", case_sensitive=False, help="With --task: only jobs in this state."
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="With --task: do not ask for confirmation.")
    ] = False,
    connection: Connection = None,
) -> None:
    """Cancel jobs: waiting ones end cancelled at once, running ones once their
    worker hears the request (it cancels or aborts the task)."""
    from errands import _queries

    if bool(ids) == (task is not None):
        _fail("give job ids or --task TASK (not both)")
    if task is None and (queue is not None or state is not None):
        _fail("--queue and --state filter --task")
    with _connect(resolve_conninfo(connection)) as conn:
        if task is not None:
            params = {"task": task, "queue": queue, "state": state.value if state else None}
            ids = [r["id"] for r in conn.execute(_queries.SELECT_JOB_IDS, params).fetchall()]
            if not ids:
                typer.echo("no matching job")
                return
            noun = "job" if len(ids) == 1 else "jobs"
            if not yes and not typer.confirm(f"cancel {len(ids)} {noun} of task {task!r}?"):
                _fail("nothing cancelled")
        rows = conn.execute(_queries.CANCEL_JOBS, {"ids": ids}).fetchall()
    counts: dict[str, list[str]] = {}
    for row in rows:
        counts.setdefault(row["outcome"], []).append(str(row["id"]))
    for outcome, words in _WORDS.items():
        listed = counts.get(outcome)
        if listed:
            more = ", ..." if len(listed) > 20 else ""
            typer.echo(f"{words}: {len(listed)} ({', '.join(listed[:20])}{more})")
    if "unknown" in counts and task is None:
        raise typer.Exit(1)

"""``errands flow ...``: add a flow from a JSON file, show a flow as a tree."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from errands.cli._app import flow_app
from errands.cli._common import Connection, _connect, _fail, _handle_errors, resolve_conninfo


@flow_app.command("add")
@_handle_errors
def flow_add_cmd(
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE.json", help='The flow: a list of steps, or {"steps": [...]}.'),
    ],
    connection: Connection = None,
) -> None:
    """Add a flow (errands.add_flow) and print its id and each step's job id."""
    try:
        flow = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        _fail(f"cannot read flow {str(file)!r}: {exc.strerror or exc}")
    except ValueError as exc:
        _fail(f"{file}: not JSON: {exc}")
    from errands.flows import add_flow

    with _connect(resolve_conninfo(connection)) as conn:
        added = add_flow(conn, flow)
    typer.echo(f"flow {added.id}")
    for step, job_id in added.jobs.items():
        typer.echo(f"  {step}: job {job_id}")


def _tree_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Each step under each step it depends on (roots first, in step order); a step
    met again under a second dependency is shown once more, without its subtree."""
    children: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        for dep in row["depends_on"]:
            children.setdefault(dep, []).append(row)
    shown: set[str] = set()
    lines: list[str] = []

    def label(row: dict[str, Any]) -> str:
        state = row["state"] or "finished (not kept)"
        extra = " (runs anyway)" if row["run_anyway"] else ""
        error = (
            f" -- {row['last_error']}" if row["last_error"] and row["state"] != "completed" else ""
        )
        task = row["task_identifier"] or ""
        return f"{row['step']}  #{row['job_id']}  {task}  {state}{extra}{error}"

    def walk(row: dict[str, Any], prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        again = row["step"] in shown
        lines.append(prefix + branch + label(row) + ("  (see above)" if again else ""))
        if again:
            return
        shown.add(row["step"])
        kids = children.get(row["step"], [])
        inner = prefix + ("" if top else ("    " if last else "│   "))
        for i, kid in enumerate(kids):
            walk(kid, inner, i == len(kids) - 1, False)

    for row in rows:
        if not row["depends_on"]:
            walk(row, "", True, True)
    return lines


@flow_app.command("show")
@_handle_errors
def flow_show_cmd(
    flow_id: Annotated[
        int, typer.Argument(metavar="ID", help="The flow id (errands flow add prints it).")
    ],
    connection: Connection = None,
) -> None:
    """Show a flow's steps with their states, as a tree (each step under what it waits for)."""
    from errands import _queries

    with _connect(resolve_conninfo(connection)) as conn:
        rows = conn.execute(_queries.FLOW_STEPS, {"flow_id": flow_id}).fetchall()
    if not rows:
        _fail(f"flow {flow_id} does not exist")
    typer.echo(f"flow {flow_id}")
    for line in _tree_lines(rows):
        typer.echo(line)

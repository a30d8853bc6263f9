"""``errands workers``: the registered workers."""

import json

import typer

from errands.cli._app import app
from errands.cli._common import AsJson, Connection, _connect, _handle_errors, resolve_conninfo
from errands.cli._format import _format_time, _json_default, _table


@app.command("workers")
@_handle_errors
def workers_cmd(
    as_json: AsJson = False,
    connection: Connection = None,
) -> None:
    """List registered workers: alive, hung or dead, and the jobs each has locked."""
    from errands import _queries

    with _connect(resolve_conninfo(connection)) as conn:
        rows = conn.execute(_queries.WORKERS).fetchall()
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, default=_json_default))
    elif not rows:
        typer.echo("no workers")
    else:
        table = [
            [
                r["id"],
                f"{r['host'] or ''}:{r['pid'] or ''}",
                r["state"],
                _format_time(r["started_at"]),
                _format_time(r["last_heartbeat"]),
                " ".join(str(i) for i in r["running_job_ids"]),
            ]
            for r in rows
        ]
        headers = ["ID", "HOST:PID", "STATE", "STARTED", "HEARTBEAT", "RUNNING JOBS"]
        typer.echo(_table(headers, table))

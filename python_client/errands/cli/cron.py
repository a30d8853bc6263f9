"""``errands cron ...``: recurring jobs (crontab files)."""

from pathlib import Path
from typing import Annotated

import typer

from errands.cli._app import cron_app
from errands.cli._common import (
    Connection,
    _connect,
    _fail,
    _handle_errors,
    _one_line,
    resolve_conninfo,
)


@cron_app.command("check")
@_handle_errors
def cron_check_cmd(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The crontab file.")],
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, max=1000, help="Run times per item.")
    ] = 5,
    connection: Connection = None,
) -> None:
    """Check a crontab file: print each item's next run times, or the first error."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot read crontab {str(file)!r}: {exc.strerror or exc}")
    import psycopg

    from errands import _queries

    with _connect(resolve_conninfo(connection)) as conn:
        try:
            rows = conn.execute(_queries.CRON_NEXT_RUNS, {"crontab": text, "n": count}).fetchall()
        except psycopg.errors.InvalidParameterValue as exc:
            message = _one_line(exc.diag.message_primary or str(exc))
            _fail(f"{file}: {message.removeprefix('errands: ')}")
    if not rows:
        typer.echo(f"{file}: no items")
        return
    current = None
    for row in rows:
        if row["id"] != current:
            current = row["id"]
            options = row["options"]
            extra = "".join(f" {k}={v}" for k, v in options.items() if k not in ("id",))
            typer.echo(f"line {row['line_number']}: {row['id']} (task {row['task']}){extra}")
        if row["run_at"] is None:
            typer.echo("  never runs")
        else:
            typer.echo(f"  {row['run_at'].isoformat()}")

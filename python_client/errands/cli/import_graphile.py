"""``errands import-graphile``: copy a Graphile Worker database's jobs into Errands.

The copying is ``errands.import_graphile`` (sql/schema/85_import.sql); this prints
its counts.
"""

from typing import Annotated

import typer

from errands.cli._app import app
from errands.cli._common import Connection, _connect, _handle_errors, resolve_conninfo

_COPIED = ("pending", "scheduled", "retrying", "failed")


@app.command("import-graphile")
@_handle_errors
def import_graphile_cmd(
    schema: Annotated[
        str, typer.Option("--schema", "-s", help="Graphile Worker's schema in the same database.")
    ] = "graphile_worker",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be copied; write nothing.")
    ] = False,
    connection: Connection = None,
) -> None:
    """Copy Graphile Worker's jobs and crontab state into Errands (safe to run again)."""
    from errands import _queries

    # One transaction: all of it is copied or none (the function locks Graphile's
    # jobs table until the commit, so Graphile workers cannot take a job meanwhile).
    with _connect(resolve_conninfo(connection)) as conn, conn.transaction():
        rows = conn.execute(_queries.IMPORT_GRAPHILE, {"schema": schema, "dry_run": dry_run})
        counts = {row["item"]: int(row["count"]) for row in rows}
    verb = "would copy" if dry_run else "copied"
    jobs = sum(counts.get(state, 0) for state in _COPIED)
    typer.echo(f"{'dry run: ' if dry_run else ''}{verb} from schema {schema}:")
    typer.echo(f"  jobs          {jobs:>8}")
    for state in _COPIED:
        typer.echo(f"    {state:<11} {counts.get(state, 0):>8}")
    typer.echo(f"  crontabs      {counts.get('crontabs', 0):>8}  (known crontab state)")
    typer.echo("skipped:")
    typer.echo(f"  already copied {counts.get('already_imported', 0):>7}  (by an earlier run)")
    typer.echo(f"  key in use    {counts.get('key_conflict', 0):>8}  (an Errands job has the key)")
    running = counts.get("running", 0)
    typer.echo(f"  running       {running:>8}  (locked by a Graphile worker)")
    if dry_run:
        typer.echo("nothing written (--dry-run)")
    if running:
        typer.echo(
            f"errands: {running} running job(s) not copied: stop Graphile Worker's workers, then"
            " run `errands import-graphile` again to copy the ones that did not complete (jobs"
            " of a killed worker stay locked: SELECT graphile_worker.force_unlock_workers(...))",
            err=True,
        )

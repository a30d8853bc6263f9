"""The typer applications: ``errands`` and its ``db`` and ``cron`` groups.

The command modules register their commands on these when :mod:`errands.cli`
imports them.
"""

from typing import Annotated

import typer

from errands import __version__

app = typer.Typer(
    name="errands",
    help="Errands: a PostgreSQL-native job queue.\n\n"
    "Without -c/--connection the database is $DATABASE_URL, else the libpq PG* "
    "variables (when PGDATABASE or PGHOST is set), else an embedded PostgreSQL "
    "in ./.errands/ that errands starts itself.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(
    help="Manage the embedded default database (./.errands/pgdata).",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")
cron_app = typer.Typer(help="Recurring jobs (crontab files).", no_args_is_help=True)
app.add_typer(cron_app, name="cron")
flow_app = typer.Typer(help="Flows: graphs of jobs (errands.add_flow).", no_args_is_help=True)
app.add_typer(flow_app, name="flow")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"errands {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    pass

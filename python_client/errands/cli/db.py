"""``errands install`` and ``errands db ...`` (the embedded default database)."""

import typer

from errands.cli._app import app, db_app
from errands.cli._common import (
    EXIT_NOT_RUNNING,
    Connection,
    _connect,
    _handle_errors,
    resolve_conninfo,
)


@app.command("install")
@_handle_errors
def install_cmd(connection: Connection = None) -> None:
    """Create or upgrade the errands schema."""
    from errands import _queries
    from errands._install import install

    with _connect(resolve_conninfo(connection)) as conn:
        install(conn)
        row = conn.execute(_queries.SCHEMA_VERSION).fetchone()
    version = row["max"] if row else None
    typer.echo(f"errands schema installed (version {version})")


@db_app.command("start")
@_handle_errors
def db_start() -> None:
    """Initialise (first time) and start the embedded database."""
    from errands import _embedded

    emb = _embedded.ensure_started()
    typer.echo(f"embedded database running: {emb.describe()}")


@db_app.command("stop")
@_handle_errors
def db_stop() -> None:
    """Stop the embedded database."""
    from errands import _embedded

    emb = _embedded.load()
    if emb is not None and emb.stop():
        typer.echo("embedded database stopped")
    else:
        typer.echo("embedded database is not running")


@db_app.command("status")
@_handle_errors
def db_status() -> None:
    """Show the embedded database; exit status 3 when it is not running."""
    from errands import _embedded

    emb = _embedded.load()
    if emb is None or not emb.is_initialised():
        typer.echo("embedded database: not initialised (errands db start creates it)")
        raise typer.Exit(EXIT_NOT_RUNNING)
    running = emb.is_running()
    typer.echo(f"embedded database: {'running' if running else 'stopped'}")
    typer.echo(f"  url:  {emb.url()}")
    typer.echo(f"  data: {emb.display_datadir()}")
    typer.echo(f"  log:  {emb.logfile}")
    if emb.os_user:
        typer.echo(f"  runs as OS user {emb.os_user!r}")
    if not running:
        raise typer.Exit(EXIT_NOT_RUNNING)


@db_app.command("url")
@_handle_errors
def db_url() -> None:
    """Print the embedded database's URL (starting it if needed)."""
    from errands import _embedded

    typer.echo(_embedded.ensure_started().url())

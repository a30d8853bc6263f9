"""``errands dashboard``: serve the web dashboard with uvicorn.

Starlette, Jinja2 and uvicorn (the ``dashboard`` extra) are imported only when the
command runs, so other commands do not pay for them.
"""

# No `from __future__ import annotations`: typer reads the signatures (see errands.cli).

from typing import Annotated

import typer

from errands.cli._app import app
from errands.cli._common import Connection, _handle_errors, resolve_conninfo

EXIT_USAGE = 2


def is_loopback(host: str) -> bool:
    import ipaddress  # here: not on the start-up path of the other commands

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command("dashboard")
@_handle_errors
def dashboard_cmd(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port.")] = 8089,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show pages only: no action forms, POST is 403.")
    ] = False,
    connection: Connection = None,
) -> None:
    """Serve the web dashboard (needs the optional dashboard extra).

    Credentials come from ERRANDS_DASHBOARD_TOKEN (a bearer token) and/or
    ERRANDS_DASHBOARD_USERS ("alice:pw1,bob:pw2", HTTP basic); with either set every
    page needs them. Listening beyond loopback without credentials is refused.
    """
    try:
        from errands.dashboard._options import DashboardOptions
    except ImportError as exc:  # pragma: no cover - depends on the environment
        typer.echo(f"errands: the dashboard needs its extra ({exc.name} is missing): "
                   "pip install 'errands[dashboard]'", err=True)
        raise typer.Exit(1) from None
    try:
        options = DashboardOptions.from_env(read_only=read_only)
    except ValueError as exc:
        typer.echo(f"errands: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    if not is_loopback(host) and not options.needs_credentials:
        typer.echo(
            f"errands: refusing to serve the dashboard on {host} without credentials: set "
            "ERRANDS_DASHBOARD_TOKEN or ERRANDS_DASHBOARD_USERS, or listen on 127.0.0.1",
            err=True,
        )
        raise typer.Exit(EXIT_USAGE)
    conninfo = resolve_conninfo(connection)
    try:
        import uvicorn

        from errands.dashboard import create_app
    except ImportError as exc:  # pragma: no cover - depends on the environment
        typer.echo(f"errands: the dashboard needs its extra ({exc.name} is missing): "
                   "pip install 'errands[dashboard]'", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"errands: dashboard on http://{host}:{port}/"
               f"{' (read-only)' if read_only else ''}", err=True)
    uvicorn.run(create_app(conninfo, options), host=host, port=port, log_level="warning")

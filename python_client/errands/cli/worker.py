"""``errands worker``: run a worker (or, with ``--once``, the jobs that are due)."""

import logging
import os
import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from errands.cli._app import app
from errands.cli._common import Connection, _connect, _fail, _handle_errors, resolve_conninfo

if TYPE_CHECKING:
    from errands.tasks import TaskRegistry


class LogFormat(str, Enum):
    text = "text"
    json = "json"


@app.command("worker")
@_handle_errors
def worker_cmd(
    tasks: Annotated[
        list[str],
        typer.Option(
            "--tasks",
            "-t",
            metavar="SPEC",
            help="Tasks to run: a module (myapp.tasks), a .py file or a directory of them. "
            "Repeatable.",
        ),
    ],
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Jobs to run at the same time.")
    ] = 10,
    once: Annotated[
        bool, typer.Option("--once", help="Run the jobs that are due, then exit.")
    ] = False,
    poll_interval: Annotated[
        float,
        typer.Option("--poll-interval", min=0.01, metavar="S", help="Seconds between polls."),
    ] = 2.0,
    forbidden_flag: Annotated[
        list[str] | None,
        typer.Option("--forbidden-flag", metavar="F", help="Skip jobs with this flag. Repeatable."),
    ] = None,
    crontab: Annotated[
        Path | None,
        typer.Option(
            "--crontab",
            metavar="FILE",
            help="Recurring jobs (default: ./crontab when it exists; see `errands cron check`).",
        ),
    ] = None,
    shutdown_timeout: Annotated[
        float,
        typer.Option(
            "--shutdown-timeout",
            min=0,
            metavar="S",
            help="On SIGINT/SIGTERM, seconds to let running jobs finish.",
        ),
    ] = 30.0,
    heartbeat_interval: Annotated[
        float,
        typer.Option(
            "--heartbeat-interval", metavar="S", help="Seconds between two heartbeats (> 0)."
        ),
    ] = 5.0,
    heartbeat_timeout: Annotated[
        float,
        typer.Option(
            "--heartbeat-timeout",
            metavar="S",
            help="Declare a worker dead after this many seconds without a heartbeat "
            "(> --heartbeat-interval).",
        ),
    ] = 30.0,
    no_install: Annotated[
        bool, typer.Option("--no-install", help="Do not install/upgrade the schema first.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Log only warnings and errors.")
    ] = False,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", case_sensitive=False, help="Log line format.")
    ] = LogFormat.text,
    no_listen: Annotated[
        bool,
        typer.Option(
            "--no-listen",
            help="No LISTEN connection, no session state: find jobs by polling "
            "(PgBouncer in transaction pooling mode).",
        ),
    ] = False,
    no_prepare: Annotated[
        bool,
        typer.Option(
            "--no-prepare",
            help="No server-side prepared statements (PgBouncer in transaction pooling mode; "
            "also ERRANDS_PREPARE=0).",
        ),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            metavar="PORT",
            help="Serve Prometheus metrics at http://HOST:PORT/metrics (errands[metrics]).",
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(
            "--metrics-host",
            metavar="HOST",
            help="Address of the metrics endpoint. It has no authentication: bind another "
            "address than 127.0.0.1 only on a trusted network.",
        ),
    ] = "127.0.0.1",
    otel: Annotated[
        bool,
        typer.Option(
            "--otel", help="Trace job executions with OpenTelemetry (errands[otel])."
        ),
    ] = False,
    connection: Connection = None,
) -> None:
    """Run a worker: fetch jobs and run them with the given tasks."""
    crontab_text: str | None = None
    if crontab is None and not once and Path("crontab").is_file():
        crontab = Path("crontab")
    if crontab is not None:
        if once:
            _fail("--crontab needs a continuous worker (not --once)")
        try:
            crontab_text = crontab.read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot read crontab {str(crontab)!r}: {exc.strerror or exc}")
    from errands._connections import prepare_enabled
    from errands._options import WorkerOptions

    try:
        options = WorkerOptions(
            concurrency=jobs, poll_interval=poll_interval, forbidden_flags=forbidden_flag or None,
            shutdown_timeout=shutdown_timeout, heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout, listen=not no_listen, install=False,
            crontab=crontab_text, quiet=quiet,
            prepare=prepare_enabled(False if no_prepare else None),
            gc_tuning=True,  # this process only runs the worker (errands._gc)
            metrics_port=metrics_port, metrics_host=metrics_host, otel=otel,
        )  # fmt: skip
    except ValueError as exc:
        _fail(str(exc).removeprefix("errands: ").replace("heartbeat_", "--heartbeat-"))
    registry = _load_tasks(tasks)
    dsn = resolve_conninfo(connection)
    # Fails fast, in one line, when the database is unreachable; the same connection
    # installs/upgrades the schema (skipped when it is current) so the worker need not,
    # and with --once does the worker's sweep and first fetch (errands._once): an
    # empty queue then needs no worker at all.
    with _connect(dsn) as conn:
        if not no_install:
            from errands._install import install_if_needed

            install_if_needed(conn)
        _configure_logging(quiet=quiet, log_format=log_format)
        if once:
            from errands._once import finds_nothing_to_run

            if finds_nothing_to_run(conn, registry.identifiers, options):
                return

    from errands.runner import run_sync

    run_sync(dsn, registry, options, once=once)


def _load_tasks(specs: Sequence[str]) -> "TaskRegistry":
    # Like `python -m`: modules in the current directory are importable.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    from errands.tasks import load_tasks

    try:
        registry = load_tasks(list(specs))
    except ModuleNotFoundError as exc:
        _fail(f"cannot load tasks: no module named {exc.name!r}")
    except FileNotFoundError as exc:
        _fail(f"cannot load tasks: {str(exc).removeprefix('errands: ')}")
    except ValueError as exc:
        _fail(f"cannot load tasks: {str(exc).removeprefix('errands: ')}")
    except Exception as exc:
        _fail(f"cannot load tasks from {', '.join(specs)}: {type(exc).__name__}: {exc}")
    if len(registry) == 0:
        _fail(f"no @task functions found in {', '.join(specs)}")
    return registry


_log_handlers: list[logging.Handler] = []


def _configure_logging(*, quiet: bool, log_format: LogFormat) -> None:
    """Worker logs to stderr; replaces the handler of an earlier call (tests)."""
    from errands.logs import configure_logging

    errands_logger = logging.getLogger("errands")
    while _log_handlers:
        errands_logger.removeHandler(_log_handlers.pop())
    _log_handlers.append(
        configure_logging(
            level=logging.WARNING if quiet else logging.INFO,
            json_format=log_format is LogFormat.json,
        )
    )
    # psycopg_pool warns on every failed (re)connection and discarded connection;
    # the worker logs an outage once itself (errands._retry.Outage).
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

"""The ``errands`` command line.

Every command that talks to PostgreSQL takes ``-c/--connection DSN``; without it the
database is ``$DATABASE_URL``, else the libpq ``PG*`` variables when ``PGDATABASE``
or ``PGHOST`` is set, else the embedded one in ``./.errands/`` (see
:mod:`errands._embedded`), started on demand.

Errors are one line on stderr (``errands: ...``) and a non-zero exit status.

Start-up time matters here (``errands worker --once`` from cron, CI steps): the
module imports only typer and the standard library at the top; psycopg, the worker
machinery (asyncio, psycopg_pool) and the embedded-database code are imported by the
commands that use them.  ``worker --once`` on an empty queue decides that there is
nothing to do on its one synchronous connection and exits without starting a worker.
"""

# No `from __future__ import annotations` here: typer reads every command's signature
# on every run, and evaluating string annotations costs ~20 ms there; annotations
# naming modules imported only for type checking are quoted instead.

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, NoReturn, ParamSpec, TypeVar

import typer

from errands import __version__

if TYPE_CHECKING:
    import psycopg

    from errands.tasks import TaskRegistry

P = ParamSpec("P")
R = TypeVar("R")

# Exit statuses: 1 for errors, 3 for `db status` of a stopped database (as pg_ctl).
EXIT_ERROR: Final = 1
EXIT_NOT_RUNNING: Final = 3

# --- SQL used only by the CLI (the others come from errands._queries) -------------

#: The jobs of ``errands.jobs`` with their state, filtered; the one definition of
#: the states `errands jobs` shows (see sql/migrations/0001_schema.sql).
JOBS_WITH_STATE: Final = """
SELECT j.*
FROM (
    SELECT v.*,
           CASE
               WHEN v.locked_at IS NOT NULL THEN 'running'
               WHEN v.attempts >= v.max_attempts THEN 'dead'
               WHEN v.attempts > 0 AND v.last_error IS NOT NULL THEN 'failed'
               WHEN v.run_at > now() THEN 'scheduled'
               ELSE 'pending'
           END AS state
    FROM errands.jobs v
) j
WHERE (%(state)s::text IS NULL OR j.state = %(state)s::text)
  AND (%(task)s::text IS NULL OR j.task_identifier = %(task)s::text)
  AND (%(queue)s::text IS NULL OR j.queue_name = %(queue)s::text)
ORDER BY j.id
LIMIT %(limit)s::bigint
"""

#: `errands retry`: due now, with a fresh set of attempts.
RETRY_JOBS: Final = (
    "SELECT id FROM errands.reschedule_jobs(%(ids)s::bigint[], run_at => now(), attempts => 0)"
)

SCHEMA_VERSION: Final = "SELECT max(id) FROM errands.migrations"

# SQLSTATEs meaning "the errands schema is not there": add a hint.
_MISSING_SCHEMA: Final = {"3F000", "42P01", "42883"}


class JobState(str, Enum):
    pending = "pending"
    running = "running"
    scheduled = "scheduled"
    failed = "failed"
    dead = "dead"


class LogFormat(str, Enum):
    text = "text"
    json = "json"


class CliError(Exception):
    """An error reported as ``errands: <message>`` on stderr."""


#: Each item of a crontab with its next run times (NULL run_at: it never runs).
WORKERS: Final = (
    "SELECT id, host, pid, started_at, last_heartbeat, state, running_job_ids"
    " FROM errands.workers ORDER BY started_at, id"
)
CRON_NEXT_RUNS: Final = """
SELECT p.line_number, p.id, p.task, p.options, n.run_at
FROM errands.parse_crontab(%(crontab)s) p
LEFT JOIN errands.cron_next_runs(%(crontab)s, now(), %(n)s) n ON n.id = p.id
ORDER BY p.line_number, n.run_at
"""

# --- the app ---------------------------------------------------------------------

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


Connection = Annotated[
    str | None,
    typer.Option(
        "--connection",
        "-c",
        metavar="DSN",
        help="PostgreSQL connection string or URL "
        "(default: $DATABASE_URL, else PG* variables, else the embedded database)",
        show_default=False,
    ),
]


def _fail(message: str) -> NoReturn:
    raise CliError(message)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _sql_error_message(exc: "psycopg.Error") -> str:
    primary = exc.diag.message_primary or str(exc)
    message = f"error {exc.sqlstate}: {_one_line(primary)}" if exc.sqlstate else _one_line(primary)
    if exc.sqlstate in _MISSING_SCHEMA and "errands" in primary:
        message += " (is the errands schema installed? run `errands install`)"
    return message


def _expected_error_message(exc: Exception) -> str | None:
    """The one-line message of an expected failure; ``None`` for anything else.

    psycopg and errands._embedded are imported by the commands that use them: an
    exception of theirs cannot exist unless they were (looked up in sys.modules so
    that other failures do not import them)."""
    if isinstance(exc, CliError):
        return str(exc)
    embedded = sys.modules.get("errands._embedded")
    if embedded is not None and isinstance(exc, embedded.EmbeddedError):
        return str(exc)
    pg = sys.modules.get("psycopg")
    if pg is not None and isinstance(exc, pg.Error):
        return _sql_error_message(exc)
    return None


def _handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures into one stderr line and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except Exception as exc:
            message = _expected_error_message(exc)
            if message is None:
                raise
        typer.echo(f"errands: {message}", err=True)
        raise typer.Exit(EXIT_ERROR)

    return wrapper


# --- connections ------------------------------------------------------------------


def resolve_conninfo(connection: str | None) -> str:
    """The connection string to use (see the module docstring).

    Starts the embedded database when it is the one, and says so on stderr.
    """
    if connection is not None:
        dsn = connection
    elif os.environ.get("DATABASE_URL"):
        dsn = os.environ["DATABASE_URL"]
    elif os.environ.get("PGDATABASE") or os.environ.get("PGHOST"):
        dsn = ""  # libpq reads the PG* variables
    else:
        from errands import _embedded

        emb = _embedded.ensure_started()
        typer.echo(f"errands: using embedded database {emb.describe()}", err=True)
        return emb.url()
    import psycopg

    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        _fail(f"invalid connection string: {_one_line(str(exc))}")
    return dsn


@contextmanager
def _connect(dsn: str) -> "Iterator[psycopg.Connection[dict[str, Any]]]":
    import psycopg
    from psycopg.rows import dict_row

    try:
        conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row, connect_timeout=10)
    except psycopg.Error as exc:
        _fail(f"cannot connect to the database: {_one_line(str(exc))}")
    with conn:
        yield conn


# --- output -----------------------------------------------------------------------


def _json_default(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _job_json(row: dict[str, Any]) -> str:
    out = dict(row)
    flags = out.get("flags")
    if isinstance(flags, dict):  # stored as a set {"flag": true}
        out["flags"] = sorted(flags)
    return json.dumps(out, default=_json_default)


def _format_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _truncate(text: str | None, width: int) -> str:
    if not text:
        return ""
    flat = _one_line(text)
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [headers, *rows]
    ]
    return "\n".join(lines)


# --- commands -----------------------------------------------------------------------


@app.command("install")
@_handle_errors
def install_cmd(connection: Connection = None) -> None:
    """Create or upgrade the errands schema."""
    from errands._install import install

    with _connect(resolve_conninfo(connection)) as conn:
        install(conn)
        row = conn.execute(SCHEMA_VERSION).fetchone()
    version = row["max"] if row else None
    typer.echo(f"errands schema installed (version {version})")


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


@app.command("add")
@_handle_errors
def add_cmd(
    identifier: Annotated[str, typer.Argument(help="The task identifier.")],
    payload: Annotated[
        str | None, typer.Option("--payload", "-p", metavar="JSON", help="The job's payload.")
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option("--queue", "-q", help="A named queue: its jobs run one at a time."),
    ] = None,
    run_at: Annotated[
        str | None,
        typer.Option(
            "--run-at",
            metavar="ISO",
            help="When to run, ISO 8601 (default: now; local time when no offset is given).",
        ),
    ] = None,
    max_attempts: Annotated[
        int | None, typer.Option("--max-attempts", help="Attempts before giving up (default 25).")
    ] = None,
    job_key: Annotated[
        str | None, typer.Option("--job-key", "-k", help="Replace/dedupe by this key.")
    ] = None,
    job_key_mode: Annotated[
        str | None,
        typer.Option("--job-key-mode", help="replace (default), preserve_run_at or unsafe_dedupe."),
    ] = None,
    priority: Annotated[
        int | None, typer.Option("--priority", help="Lower runs first (default 0).")
    ] = None,
    flag: Annotated[
        list[str] | None,
        typer.Option("--flag", "-f", help="A flag workers can forbid. Repeatable."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help="Each try of this job may run this long (overrides the task's timeout).",
        ),
    ] = None,
    connection: Connection = None,
) -> None:
    """Add a job; prints it as JSON."""
    parsed_payload: Any = None
    if payload is not None:
        try:
            parsed_payload = json.loads(payload)
        except ValueError as exc:
            _fail(f"invalid --payload JSON: {exc}")
        except RecursionError:
            _fail("invalid --payload JSON: nested too deeply")
    when = _parse_time(run_at) if run_at is not None else None
    limit: timedelta | None = None
    if timeout is not None:
        try:
            limit = timedelta(seconds=timeout)
        except (OverflowError, ValueError):
            _fail(f"invalid --timeout {timeout!r}: expected a number of seconds")
    from errands import _queries

    # One transaction: a job whose row cannot be read back (e.g. a run_at before
    # year 1 in UTC) is not left behind by a failed command.
    with _connect(resolve_conninfo(connection)) as conn, conn.transaction():
        row = conn.execute(
            _queries.ADD_JOB,
            {
                "identifier": identifier,
                "payload": json.dumps(parsed_payload) if payload is not None else None,
                "queue_name": queue,
                "run_at": when,
                "max_attempts": max_attempts,
                "job_key": job_key,
                "priority": priority,
                "flags": flag or None,
                "job_key_mode": job_key_mode,
                "timeout": limit,
            },
        ).fetchone()
    if row is None or row["id"] is None:
        _fail("add_job returned no job")
    typer.echo(_job_json(row))


def _parse_time(text: str) -> datetime:
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo is not None else parsed.astimezone()
    except (ValueError, OverflowError):
        _fail(f"invalid --run-at {text!r}: expected an ISO 8601 time, e.g. 2030-01-31T09:00:00Z")


@app.command("jobs")
@_handle_errors
def jobs_cmd(
    state: Annotated[
        JobState | None,
        typer.Option("--state", "-s", case_sensitive=False, help="Only jobs in this state."),
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", "-t", help="Only jobs of this task.")
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Only jobs of this queue.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="At most this many jobs (0: all).")
    ] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line, every column.")
    ] = False,
    connection: Connection = None,
) -> None:
    """List jobs: pending, scheduled, running, failed (waiting to retry) and dead."""
    with _connect(resolve_conninfo(connection)) as conn:
        rows = conn.execute(
            JOBS_WITH_STATE,
            {
                "state": state.value if state is not None else None,
                "task": task,
                "queue": queue,
                "limit": limit + 1 if limit else None,
            },
        ).fetchall()
    more = bool(limit) and len(rows) > limit
    if more:
        rows = rows[:limit]
    if as_json:
        for row in rows:
            typer.echo(_job_json(row))
    elif not rows:
        typer.echo("no jobs")
    else:
        table = [
            [
                str(r["id"]),
                r["task_identifier"],
                r["queue_name"] or "",
                r["state"],
                f"{r['attempts']}/{r['max_attempts']}",
                _format_time(r["run_at"]),
                _truncate(r["last_error"], 60),
            ]
            for r in rows
        ]
        headers = ["ID", "TASK", "QUEUE", "STATE", "ATTEMPTS", "RUN_AT", "LAST_ERROR"]
        typer.echo(_table(headers, table))
    if more:
        typer.echo(f"errands: showing the first {limit} jobs (--limit N to see more)", err=True)


@app.command("retry")
@_handle_errors
def retry_cmd(
    ids: Annotated[list[int], typer.Argument(metavar="ID...", help="Job ids.")],
    connection: Connection = None,
) -> None:
    """Make jobs due now with a fresh set of attempts (e.g. dead or failed ones)."""
    with _connect(resolve_conninfo(connection)) as conn:
        done = {r["id"] for r in conn.execute(RETRY_JOBS, {"ids": ids}).fetchall()}
    typer.echo(f"retried {len(done)} job{'' if len(done) == 1 else 's'}")
    missing = [str(i) for i in dict.fromkeys(ids) if i not in done]
    if missing:
        _fail(f"not retried (no such job, or it is running): {', '.join(missing)}")


@app.command("remove")
@_handle_errors
def remove_cmd(
    key: Annotated[str, typer.Argument(help="The job key.")],
    connection: Connection = None,
) -> None:
    """Remove the job with this job key; prints it as JSON."""
    from errands import _queries

    with _connect(resolve_conninfo(connection)) as conn:
        row = conn.execute(_queries.REMOVE_JOB, {"job_key": key}).fetchone()
    if row is None or row["id"] is None:
        _fail(f"no job with key {key!r}")
    typer.echo(_job_json(row))
    if row["locked_at"] is not None:
        typer.echo(
            f"errands: job {row['id']} is running: it finishes but will not be retried", err=True
        )


@app.command("cleanup")
@_handle_errors
def cleanup_cmd(
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            metavar="TASK",
            help="DELETE_PERMAFAILED_JOBS, GC_JOB_QUEUES or GC_TASK_IDENTIFIERS. "
            "Repeatable. Default: GC_JOB_QUEUES.",
        ),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", metavar="IDENT", help="Task identifier GC_TASK_IDENTIFIERS keeps."),
    ] = None,
    connection: Connection = None,
) -> None:
    """Housekeeping: delete dead jobs, unused queues and task identifiers."""
    tasks = [t.upper() for t in task] if task else ["GC_JOB_QUEUES"]
    from errands import _queries

    with _connect(resolve_conninfo(connection)) as conn:
        rows = conn.execute(_queries.CLEANUP, {"tasks": tasks, "keep": keep or []}).fetchall()
    for r in rows:
        typer.echo(f"{r['task']}: deleted {r['deleted']}")


@app.command("workers")
@_handle_errors
def workers_cmd(
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line, every column.")
    ] = False,
    connection: Connection = None,
) -> None:
    """List registered workers: alive, hung or dead, and the jobs each has locked."""
    with _connect(resolve_conninfo(connection)) as conn:
        rows = conn.execute(WORKERS).fetchall()
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


# --- recurring jobs ---------------------------------------------------------------------


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

    with _connect(resolve_conninfo(connection)) as conn:
        try:
            rows = conn.execute(CRON_NEXT_RUNS, {"crontab": text, "n": count}).fetchall()
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


# --- the embedded database ------------------------------------------------------------


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()

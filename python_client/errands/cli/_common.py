"""What every command shares: the ``-c/--connection`` option, finding and opening the
database, and turning expected failures into one ``errands: ...`` line on stderr.

psycopg and errands._embedded are imported by the functions that need them (see
:mod:`errands.cli`).
"""

# No `from __future__ import annotations`: typer reads the signatures (see errands.cli).

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Final, NoReturn, ParamSpec, TypeVar

import typer

if TYPE_CHECKING:
    import psycopg

P = ParamSpec("P")
R = TypeVar("R")

# Exit statuses: 1 for errors, 3 for `db status` of a stopped database (as pg_ctl).
EXIT_ERROR: Final = 1
EXIT_NOT_RUNNING: Final = 3

# SQLSTATEs meaning "the errands schema is not there": add a hint.
_MISSING_SCHEMA: Final = {"3F000", "42P01", "42883"}


class CliError(Exception):
    """An error reported as ``errands: <message>`` on stderr."""


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

#: ``--json`` of the listing commands.
AsJson = Annotated[bool, typer.Option("--json", help="One JSON object per line, every column.")]


def _fail(message: str) -> NoReturn:
    raise CliError(message)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _sql_error_message(exc: "psycopg.Error") -> str:
    primary = exc.diag.message_primary or str(exc)
    message = f"error {exc.sqlstate}: {_one_line(primary)}" if exc.sqlstate else _one_line(primary)
    # An errands function's own error ("errands: ...") is not a missing schema.
    own = primary.startswith("errands:")
    if exc.sqlstate in _MISSING_SCHEMA and "errands" in primary and not own:
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
    """The connection string to use (see :mod:`errands.cli`).

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

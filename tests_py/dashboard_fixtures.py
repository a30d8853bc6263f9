"""Module fixtures shared by the dashboard test modules (not a test module).

Each module gets its own database, log folder and server, so a module binds these
to its own names: ``dsn, conn = database_fixtures("dash_http")``,
``logs = logs_fixture("dash_http")`` and, for a module served by one plain
dashboard, ``server, client = server_fixtures()``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dashboard_support import Client, dashboard
from server_support import Server

Fixture = Callable[..., Any]


def require_dashboard_extra(*more: str) -> None:
    """Skip the calling module unless the dashboard extra (and ``more``) is installed."""
    for module in ("starlette", "jinja2", "uvicorn", "multipart", *more):
        pytest.importorskip(
            module,
            reason="the dashboard extra is not installed: "
            "pip install -e '.[test]' (or errands[dashboard])",
        )


def database_fixtures(prefix: str, *, retention: str | None = None) -> tuple[Fixture, Fixture]:
    """``dsn`` (a database per module named after ``prefix``, history kept for
    ``retention`` if given) and ``conn`` (an autocommit connection per test)."""

    @pytest.fixture(scope="module")
    def dsn(database_factory: Any, errands_template: str) -> Iterator[str]:
        with database_factory(template=errands_template, prefix=prefix) as value:
            if retention is not None:
                with psycopg.connect(value, autocommit=True) as conn:
                    conn.execute("SELECT errands.set_retention(%s::interval)", [retention])
            yield value

    @pytest.fixture
    def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(dsn, autocommit=True) as connection:
            yield connection

    return dsn, conn


def logs_fixture(prefix: str) -> Fixture:
    """``logs``: a folder per module for the servers' and workers' logs."""

    @pytest.fixture(scope="module")
    def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
        return tmp_path_factory.mktemp(prefix)

    return logs


def server_fixtures() -> tuple[Fixture, Fixture]:
    """``server`` (``errands dashboard`` on the module's database, for the module)
    and ``client`` (a fresh client of it per test: no cookies carried over)."""

    @pytest.fixture(scope="module")
    def server(dsn: str, logs: Path) -> Iterator[Server]:
        with dashboard(dsn, logs / "dashboard.log") as value:
            yield value

    @pytest.fixture
    def client(server: Server) -> Client:
        return Client(server.url)

    return server, client

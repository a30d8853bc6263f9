"""pytest plugin: a throwaway PostgreSQL cluster, errands template databases, pgTAP files.

Registered from the rootdir ``conftest.py`` (``pytest_plugins``).

Session-wide resources (started lazily, at most once per run, torn down at exit):

* ``pg_cluster`` fixture -> :class:`pgtap.cluster.PgCluster` (``host``, ``port``,
  ``user``, ``dsn(dbname)``);
* ``errands_template`` fixture -> name of a database with errands installed;
* ``errands_pgtap_template`` fixture -> the same plus ``CREATE EXTENSION pgtap``.

Every ``tests_sql/*.sql`` file is collected as one test item: it runs with
``psql -X -v ON_ERROR_STOP=1 -q -A -t -f FILE`` against a fresh copy of
``errands_pgtap_template`` and its TAP output is checked (see :func:`parse_tap`).
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgtap.cluster import PgCluster, find_psql

SQL_TEST_DIR = "tests_sql"
ERRANDS_TEMPLATE = "errands_template"
PGTAP_TEMPLATE = "errands_pgtap_template"
PSQL_TIMEOUT = 300


# --- session resources ------------------------------------------------------------


class _Resources:
    """Lazily created, session-wide cluster and template databases."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._cluster: PgCluster | None = None
        self._templates: set[str] = set()
        self._counter = itertools.count(1)

    @property
    def cluster(self) -> PgCluster:
        if self._cluster is None:
            cluster = PgCluster()
            self._config.add_cleanup(cluster.stop)
            self._cluster = cluster.start()
        return self._cluster

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.cluster.dsn("postgres"), autocommit=True)

    def _template(
        self, name: str, base: str | None, setup: Callable[[psycopg.Connection[Any]], None]
    ) -> str:
        """Create template database ``name`` (once) from ``base`` and run ``setup`` in it.

        On failure the half-made database is dropped and the error propagates, so every
        test that needs the template reports the real cause.
        """
        if name not in self._templates:
            self.create_database(name, template=base)
            try:
                with psycopg.connect(self.cluster.dsn(name), autocommit=True) as conn:
                    setup(conn)
            except BaseException:
                self.drop_database(name)
                raise
            self._templates.add(name)
        return name

    def errands_template(self) -> str:
        import errands

        return self._template(ERRANDS_TEMPLATE, None, errands.install)

    def pgtap_template(self) -> str:
        def setup(conn: psycopg.Connection[Any]) -> None:
            try:
                conn.execute("CREATE EXTENSION pgtap")
            except psycopg.errors.FeatureNotSupported as exc:
                raise RuntimeError(
                    "the pgTAP extension is not installed: apt-get install "
                    "postgresql-15-pgtap (or run `make test`, which does)"
                ) from exc

        return self._template(PGTAP_TEMPLATE, self.errands_template(), setup)

    def new_name(self, prefix: str = "test") -> str:
        return f"{prefix}_{next(self._counter)}"

    def create_database(self, name: str, template: str | None = None) -> str:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self.admin() as conn:
            conn.execute(query)
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


_RESOURCES = pytest.StashKey[_Resources]()


def resources(config: pytest.Config) -> _Resources:
    """The session's lazily-started cluster and templates (shared with conftest fixtures)."""
    if _RESOURCES not in config.stash:
        config.stash[_RESOURCES] = _Resources(config)
    return config.stash[_RESOURCES]


@pytest.fixture(scope="session")
def pg_cluster(pytestconfig: pytest.Config) -> PgCluster:
    """The session's PostgreSQL cluster (started on first use)."""
    return resources(pytestconfig).cluster


@pytest.fixture(scope="session")
def errands_template(pytestconfig: pytest.Config) -> str:
    """Name of a template database with errands installed."""
    return resources(pytestconfig).errands_template()


@pytest.fixture(scope="session")
def errands_pgtap_template(pytestconfig: pytest.Config) -> str:
    """Name of a template database with errands and the pgtap extension installed."""
    return resources(pytestconfig).pgtap_template()


@pytest.fixture(scope="session")
def database_factory(pytestconfig: pytest.Config) -> Callable[..., Any]:
    """``database_factory(template=None, prefix="test")`` -> context manager yielding a DSN."""
    res = resources(pytestconfig)

    @contextmanager
    def make(template: str | None = None, prefix: str = "test") -> Iterator[str]:
        name = res.create_database(res.new_name(prefix), template=template)
        try:
            yield res.cluster.dsn(name)
        finally:
            res.drop_database(name)

    return make


# --- TAP parsing -----------------------------------------------------------------

_PLAN_RE = re.compile(r"^1\.\.(\d+)(?:\s*#\s*(.*))?$")
_TEST_RE = re.compile(r"^(not ok|ok)\b\s*(\d+)?(.*)$")
_DIRECTIVE_RE = re.compile(r"#\s*(TODO|SKIP)\b", re.IGNORECASE)


@dataclass
class TapResult:
    """What a TAP stream says."""

    plan: int | None = None
    skip_all: str | None = None
    tests: int = 0
    failures: list[list[str]] = field(default_factory=list)
    """Each failing test line followed by its ``#`` diagnostic lines."""
    bailed_out: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_tap(output: str) -> TapResult:
    """Parse TAP from pgTAP via ``psql -A -t``; ``problems`` lists why it is not a pass.

    A run passes when it has a plan ``1..N`` (first or last), exactly N test lines,
    no ``not ok`` (``# TODO`` ones excepted) and no ``Bail out!``.
    """
    result = TapResult()
    current: list[str] | None = None
    plans = 0
    for raw in output.splitlines():
        line = raw.rstrip()
        if line.startswith("#"):
            if current is not None:
                current.append(line)
            continue
        current = None
        if line.startswith("Bail out!"):
            result.bailed_out = line
            continue
        plan = _PLAN_RE.match(line)
        if plan:
            plans += 1
            result.plan = int(plan.group(1))
            if result.plan == 0 and plan.group(2) and plan.group(2).upper().startswith("SKIP"):
                result.skip_all = plan.group(2)[4:].strip() or "skipped"
            continue
        test = _TEST_RE.match(line)
        if test:
            result.tests += 1
            directive = _DIRECTIVE_RE.search(test.group(3))
            is_todo = directive is not None and directive.group(1).upper() == "TODO"
            if test.group(1) == "not ok" and not is_todo:
                current = [line]
                result.failures.append(current)
    if result.bailed_out:
        result.problems.append(result.bailed_out)
    if plans == 0:
        result.problems.append("no TAP plan (1..N): did the file call plan()?")
    elif plans > 1:
        result.problems.append(f"{plans} TAP plans in one output")
    elif result.plan != result.tests and result.skip_all is None:
        result.problems.append(f"planned {result.plan} tests but ran {result.tests}")
    if result.failures:
        result.problems.append(f"{len(result.failures)} of {result.tests} tests failed")
    return result


@dataclass
class PsqlRun:
    returncode: int
    stdout: str
    stderr: str


def run_psql_file(path: Path, dsn: str) -> PsqlRun:
    """Run ``path`` with psql in tuples-only, unaligned mode, stopping on the first error."""
    env = dict(os.environ)
    env.pop("PGOPTIONS", None)
    env.setdefault("PGAPPNAME", "errands-pgtap")
    proc = subprocess.run(
        [find_psql(), "-X", "-v", "ON_ERROR_STOP=1", "-q", "-A", "-t", "-f", str(path), dsn],
        capture_output=True,
        text=True,
        cwd=path.parent,
        env=env,
        timeout=PSQL_TIMEOUT,
        check=False,
    )
    return PsqlRun(proc.returncode, proc.stdout, proc.stderr)


# --- collection ----------------------------------------------------------------------


class PgTapFailure(Exception):
    """A pgTAP file did not pass."""


class PgTapFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        yield PgTapItem.from_parent(self, name=self.path.name)


class PgTapItem(pytest.Item):
    def runtest(self) -> None:
        res = resources(self.config)
        template = res.pgtap_template()
        name = res.create_database(res.new_name("pgtap"), template=template)
        try:
            run = run_psql_file(self.path, res.cluster.dsn(name))
        finally:
            res.drop_database(name)
        tap = parse_tap(run.stdout)
        problems = list(tap.problems)
        if run.returncode != 0:
            problems.insert(0, f"psql exited with status {run.returncode}")
        if not problems and tap.skip_all is not None:
            pytest.skip(f"pgTAP: {tap.skip_all}")
        if problems:
            raise PgTapFailure(self._describe(problems, tap, run))

    @staticmethod
    def _describe(problems: list[str], tap: TapResult, run: PsqlRun) -> str:
        parts = ["; ".join(problems)]
        if tap.failures:
            parts.append("\nfailing tests:")
            parts.extend("\n".join(lines) for lines in tap.failures)
        parts.append("\n--- psql stdout ---")
        parts.append(run.stdout.rstrip() or "<empty>")
        if run.stderr.strip():
            parts.append("--- psql stderr ---")
            parts.append(run.stderr.rstrip())
        return "\n".join(parts)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> str | Any:
        if isinstance(excinfo.value, PgTapFailure):
            return f"{self.path.name}: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"pgtap {self.path.name}"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".sql" and file_path.parent.name == SQL_TEST_DIR:
        return PgTapFile.from_parent(parent, path=file_path)
    return None

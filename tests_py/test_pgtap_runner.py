"""The pgTAP runner itself: TAP parsing and running a file through psql."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from pgtap.pytest_pgtap import parse_tap, run_psql_file


def test_parse_passing() -> None:
    tap = parse_tap("1..2\nok 1 - a\nok 2 - b\n")
    assert tap.ok, tap.problems
    assert (tap.plan, tap.tests) == (2, 2)


def test_parse_not_ok_keeps_diagnostics() -> None:
    tap = parse_tap(
        '1..2\nok 1 - a\nnot ok 2 - b\n# Failed test 2: "b"\n#   have: 1\n#   want: 2\n'
    )
    assert not tap.ok
    assert tap.failures == [["not ok 2 - b", '# Failed test 2: "b"', "#   have: 1", "#   want: 2"]]


def test_parse_todo_is_not_a_failure() -> None:
    assert parse_tap("1..1\nnot ok 1 - later # TODO not yet\n").ok


def test_parse_plan_mismatch_and_missing_plan() -> None:
    assert "planned 3 tests but ran 2" in parse_tap("1..3\nok 1\nok 2\n").problems
    assert any("no TAP plan" in p for p in parse_tap("ok 1\n").problems)
    assert not parse_tap("").ok


def test_parse_skip_all() -> None:
    tap = parse_tap("1..0 # SKIP no reason\n")
    assert tap.ok
    assert tap.skip_all == "no reason"


def test_parse_bail_out() -> None:
    assert not parse_tap("1..1\nBail out! broken\n").ok


@pytest.fixture
def pgtap_dsn(
    database_factory: Callable[..., AbstractContextManager[str]], errands_pgtap_template: str
) -> Iterator[str]:
    with database_factory(template=errands_pgtap_template, prefix="runner") as dsn:
        yield dsn


def test_run_failing_file(tmp_path: Path, pgtap_dsn: str) -> None:
    path = tmp_path / "failing.sql"
    path.write_text(
        "\\set expected 2\n"
        "BEGIN;\n"
        "SELECT plan(2);\n"
        "SELECT is(1 + 1, :expected, 'arithmetic');\n"
        "SELECT is(1, :expected, 'wrong on purpose');\n"
        "SELECT * FROM finish();\n"
        "ROLLBACK;\n"
    )
    run = run_psql_file(path, pgtap_dsn)
    assert run.returncode == 0, run.stderr
    tap = parse_tap(run.stdout)
    assert tap.tests == 2
    assert len(tap.failures) == 1
    failure = "\n".join(tap.failures[0])
    assert "not ok 2 - wrong on purpose" in failure
    assert "have: 1" in failure


def test_run_sql_error_stops_psql(tmp_path: Path, pgtap_dsn: str) -> None:
    path = tmp_path / "error.sql"
    path.write_text("SELECT plan(1);\nSELECT no_such_function();\nSELECT ok(true);\n")
    run = run_psql_file(path, pgtap_dsn)
    assert run.returncode != 0
    assert "no_such_function" in run.stderr
    assert "planned 1 tests but ran 0" in parse_tap(run.stdout).problems

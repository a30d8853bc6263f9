"""`errands add` with hostile arguments, property-based (hypothesis).

Random identifiers, payload JSON text, run_at times, priorities, max_attempts,
queue names, job keys, modes and flags: the command either stores exactly the
job it was given (and prints it) or exits non-zero with one clear line on stderr
and writes nothing. Inputs that are valid by the rules of docs/cli.md must succeed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row
from typer.testing import CliRunner

from errands.cli import app

DatabaseFactory = Callable[..., AbstractContextManager[str]]

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Command-line arguments cannot hold NUL, and arrive as str without lone surrogates.
_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
_nasty = st.sampled_from(
    ["'; DROP TABLE errands._jobs; --", "-x", "--help", "%s", "\\", '"', " ", "\u202e", "=", ""]
)


def _text(max_size: int) -> st.SearchStrategy[str]:
    return st.one_of(st.text(_chars, max_size=max_size), _nasty)


def _long(n: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda c, k: c * k, st.sampled_from(["x", "\u00e9"]), st.sampled_from([n, n + 1])
    )


_json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(_chars, max_size=20),
    ),
    lambda c: st.one_of(
        st.lists(c, max_size=3), st.dictionaries(st.text(_chars, max_size=8), c, max_size=3)
    ),
    max_leaves=10,
)
_payloads = st.one_of(
    st.none(),
    st.builds(json.dumps, _json_values),
    st.sampled_from(
        [
            "{bad",
            "",
            "NaN",
            "Infinity",
            "[1,]",
            '"\\u0000"',
            '"\\ud800"',
            "[" * 100_000 + "]" * 100_000,
        ]
    ),
    st.text(_chars, max_size=20),
)
_run_ats = st.one_of(
    st.none(),
    st.datetimes(timezones=st.one_of(st.none(), st.just(timezone.utc))).map(datetime.isoformat),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(["0001-01-01T00:00:00", "0001-01-01T00:00:00+05:00", "2024-02-30T00:00:00",
                     "9999-12-31T23:59:59-05:00", "2030-01-31T09:00:00Z", "tomorrow", ""]),
)  # fmt: skip
_ints = st.one_of(
    st.none(),
    st.sampled_from([-32769, -32768, -1, 0, 1, 25, 32767, 32768, 2**31, 10**30]).map(str),
    st.integers(-(2**31), 2**31).map(str),
    st.sampled_from(["1.5", "abc", "", " 7 ", "1_000", "\u0663"]),  # int() takes the last 3
)
_modes = st.one_of(st.none(), st.sampled_from(["replace", "preserve_run_at", "unsafe_dedupe", "x"]))


@pytest.fixture(scope="module")
def cli_db(database_factory: DatabaseFactory, errands_template: str) -> Iterator[str]:
    with database_factory(template=errands_template, prefix="hostilecli") as dsn:
        yield dsn


def _int(text: str | None) -> int | bool | None:
    """The CLI's integer: None when absent, False when refused, True when it is not
    decided here (int() takes it, e.g. "1_000" or " 7 ", the CLI parser may not)."""
    if text is None:
        return None
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    try:
        int(text)
    except ValueError:
        return False
    return True


def _when(text: str) -> datetime | None:
    """The CLI's reading of --run-at (ISO 8601; local time when naive); None if invalid."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo is not None else parsed.astimezone()
    except (ValueError, OverflowError):
        return None


def _valid(args: dict[str, Any]) -> bool | None:
    """Whether the rules of docs/cli.md accept these arguments (None: not decided here)."""
    checks: list[bool] = [
        1 <= len(args["identifier"]) <= 128,
        args["queue"] is None or 1 <= len(args["queue"]) <= 128,
        args["job_key"] is None or 1 <= len(args["job_key"]) <= 512,
        args["mode"] in (None, "replace", "preserve_run_at", "unsafe_dedupe"),
    ]
    priority, max_attempts = _int(args["priority"]), _int(args["max_attempts"])
    if priority is True or max_attempts is True:
        return None
    checks.append(priority is None or (priority is not False and -32768 <= priority <= 32767))
    checks.append(
        max_attempts is None or (max_attempts is not False and 1 <= max_attempts <= 32767)
    )
    if args["run_at"] is not None:
        when = _when(args["run_at"])
        if when is None:
            checks.append(False)
        elif not 1 < when.year < 9999:
            return None  # near the ends of Python's datetime range
    if args["payload"] is not None:
        try:
            value = json.loads(args["payload"])
        except (ValueError, RecursionError):
            checks.append(False)
        else:
            text = json.dumps(value)
            if "\\ud8" in text or "\\ud9" in text or "\\uda" in text or "\\udb" in text:
                return None  # lone surrogates: PostgreSQL's json refuses some
            if any(isinstance(v, float) and not math.isfinite(v) for v in _leaves(value)):
                checks.append(False)  # NaN/Infinity are not JSON
    return all(checks)


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    else:
        yield value


def _counts(conn: psycopg.Connection[Any]) -> tuple[int, ...]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM errands._jobs), (SELECT count(*) FROM errands._tasks),"
        " (SELECT count(*) FROM errands._queues)"
    ).fetchone()
    assert row is not None
    return tuple(int(v) for v in row)


_HOSTILE = {
    "identifier": st.one_of(_text(40), _long(128)),
    "payload": _payloads,
    "queue": st.one_of(_text(30), _long(128)),
    "run_at": _run_ats,
    "max_attempts": _ints,
    "job_key": st.one_of(_text(30), _long(512)),
    "priority": _ints,
    "mode": _modes,
}
_TAME = {
    "identifier": st.text(_chars, min_size=1, max_size=20),
    "payload": st.one_of(st.none(), st.builds(json.dumps, _json_values)),
    "queue": st.one_of(st.none(), st.text(_chars, min_size=1, max_size=20)),
    "run_at": st.one_of(
        st.none(),
        st.datetimes(
            min_value=datetime(1900, 1, 1),
            max_value=datetime(2200, 1, 1),
            timezones=st.just(timezone.utc),
        ).map(datetime.isoformat),
    ),
    "max_attempts": st.one_of(st.none(), st.integers(1, 32767).map(str)),
    "job_key": st.one_of(st.none(), st.text(_chars, min_size=1, max_size=20)),
    "priority": st.one_of(st.none(), st.integers(-32768, 32767).map(str)),
    "mode": _modes,
}


@st.composite
def _add_args(draw: st.DrawFn) -> dict[str, Any]:
    """Either every argument hostile, or all valid but (maybe) one."""
    if draw(st.booleans()):
        return {key: draw(strategy) for key, strategy in _HOSTILE.items()}
    args = {key: draw(strategy) for key, strategy in _TAME.items()}
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(_HOSTILE)))
        args[key] = draw(_HOSTILE[key])
    return args


@SETTINGS
@given(args=_add_args(), flags=st.one_of(st.none(), st.lists(_text(10), min_size=1, max_size=3)))
def test_add_hostile_arguments(cli_db: str, args: dict[str, Any], flags: list[str] | None) -> None:
    identifier, payload, queue, run_at = (
        args[k] for k in ("identifier", "payload", "queue", "run_at")
    )
    max_attempts, job_key, priority = args["max_attempts"], args["job_key"], args["priority"]
    argv = ["add", "-c", cli_db]
    for option, key in [
        ("--payload", "payload"),
        ("--queue", "queue"),
        ("--run-at", "run_at"),
        ("--max-attempts", "max_attempts"),
        ("--job-key", "job_key"),
        ("--priority", "priority"),
        ("--job-key-mode", "mode"),
    ]:
        if args[key] is not None:
            argv.append(f"{option}={args[key]}")
    argv += [f"--flag={f}" for f in flags or []]
    argv += ["--", identifier]
    with psycopg.connect(cli_db, autocommit=True) as conn:
        conn.execute("DELETE FROM errands._jobs")
        before = _counts(conn)
        result = CliRunner().invoke(app, argv)
        expected_ok = _valid(args)
        if result.exit_code != 0:
            assert result.exception is None or isinstance(result.exception, SystemExit), (
                f"crashed: {result.exception!r}\n{result.stderr}"
            )
            assert _counts(conn) == before, "a failed `errands add` wrote something"
            lines = result.stderr.strip().splitlines()
            if result.exit_code == 1:
                assert len(lines) == 1 and lines[0].startswith("errands: "), result.stderr
            else:  # 2: a usage error (e.g. --priority=abc), click's message
                assert result.exit_code == 2 and "Invalid value" in result.stderr, result.stderr
            assert expected_ok is not True, f"refused valid arguments {argv}: {result.stderr}"
            event(f"refused, exit {result.exit_code}")
            return
        assert expected_ok is not False, f"accepted invalid arguments {argv}"
        printed = json.loads(result.stdout)
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT * FROM errands.jobs WHERE id = %s", [printed["id"]]
            ).fetchone()
        assert row is not None
        assert _counts(conn)[0] == before[0] + 1
        assert row["task_identifier"] == identifier
        assert row["payload"] == ({} if payload is None else json.loads(payload))
        assert row["queue_name"] == queue
        assert row["key"] == job_key
        assert row["priority"] == (0 if priority is None else int(priority))
        assert row["max_attempts"] == (25 if max_attempts is None else int(max_attempts))
        assert row["flags"] == (dict.fromkeys(flags, True) if flags else None)
        if run_at is None:
            assert row["run_at"] == row["created_at"]
        else:
            assert row["run_at"] == _when(run_at)
        assert (row["attempts"], row["locked_at"], row["last_error"]) == (0, None, None)
        event("stored")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # Stored as 0001-12-31 19:00 BC in UTC, which Python cannot read back.
        (["--run-at=0001-01-01T00:00:00+05:00"], "errands: "),
        (["--run-at=0001-01-01T00:00:00"], "errands: invalid --run-at"),  # local time
        (["--payload=" + "[" * 100_000 + "]" * 100_000], "errands: invalid --payload JSON"),
    ],
)
def test_add_found_by_hypothesis(cli_db: str, argv: list[str], message: str) -> None:
    """Once a traceback (or a job left behind by a failed command)."""
    with psycopg.connect(cli_db, autocommit=True) as conn:
        before = _counts(conn)
        result = CliRunner().invoke(app, ["add", "-c", cli_db, *argv, "--", "t"])
        assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
        assert result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1
        assert _counts(conn) == before

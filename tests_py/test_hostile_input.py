"""Hostile input to errands.add_job / errands.add_jobs, property-based (hypothesis).

Whatever the arguments (random unicode, very long strings, NULLs, huge and deeply
nested payloads, extreme timestamps, invalid modes, SQL metacharacters), a call
either fails with a clear error whose SQLSTATE is one of the documented ones
(docs/security.md, Errors on bad input) and writes nothing, or stores a job exactly
equal to what was given. Never an internal error (XX000) or a partial write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from psycopg import sql

DatabaseFactory = Callable[..., AbstractContextManager[str]]

#: SQLSTATEs add_job / add_jobs may raise on bad input (docs/security.md, Errors on bad input).
DOCUMENTED_SQLSTATES = {
    "22023",  # invalid_parameter_value: errands' own checks (lengths, ranges, payload size, mode)
    "22P02",  # invalid_text_representation: the payload is not valid JSON
    "22007",  # invalid_datetime_format: run_at is not a timestamp
    "22008",  # datetime_field_overflow: run_at out of timestamptz's range
    "22P05",  # untranslatable_character: \u0000 in a payload that is converted to jsonb
    "54001",  # statement_too_complex: payload nested deeper than max_stack_depth allows
}

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- strategies -------------------------------------------------------------------------

_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
_nasty = st.sampled_from(
    [
        "'; DROP TABLE errands._jobs; --",
        "$$; SELECT pg_sleep(10); $$",
        "\\",
        '"',
        "%s %I %L",
        "' OR '1'='1",
        "errands._jobs",
        " ",
        "\u202e\ufeff",
        "\U0001f600" * 3,
    ]
)


def _text(max_size: int) -> st.SearchStrategy[str]:
    return st.one_of(st.text(_chars, max_size=max_size), _nasty)


def _long(n: int) -> st.SearchStrategy[str]:
    """Strings around the length limit n (characters, some multibyte)."""
    return st.builds(
        lambda c, k: c * k,
        st.sampled_from(["x", "\u00e9", "\U0001f600"]),
        st.sampled_from([n - 1, n, n + 1, 10 * n]),
    )


def _name(limit: int) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), _text(40), _long(limit))


_json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(_chars, max_size=10), children, max_size=4),
    ),
    max_leaves=20,
)

_payloads = st.one_of(
    st.none(),
    st.builds(json.dumps, _json_values),
    st.builds(lambda v: json.dumps(v, ensure_ascii=False), _json_values),
    # Near, at and over the default 1 MiB limit (a JSON string of n + 2 bytes).
    st.builds(lambda n: json.dumps("x" * n), st.sampled_from([1048574, 1048575, 3_000_000])),
    # Deeply nested.
    st.builds(lambda n: "[" * n + "]" * n, st.sampled_from([10, 1000, 100_000, 500_000])),
    st.builds(lambda n: '{"a":' * n + "1" + "}" * n, st.sampled_from([100, 200_000])),
    # Not JSON, or JSON PostgreSQL may refuse to convert.
    st.sampled_from(["{bad", "", "NaN", "[1,]", '"\\u0000"', '"\\ud800"', "{}  ", " [ ] "]),
)

_run_ats = st.one_of(
    st.none(),
    st.datetimes(timezones=st.just(timezone.utc)).map(datetime.isoformat),
    st.sampled_from(
        [
            "infinity",
            "-infinity",
            "9999-12-31 23:59:59.999999+00",
            "4713-01-01 00:00:00+00 BC",
            "4714-11-24 00:00:00+00 BC",
            "4714-11-23 00:00:00+00 BC",
            "294276-12-31 23:59:59+00",
            "294277-01-01 00:00:00+00",
            "epoch",
            "garbage",
            "2024-02-30 00:00:00+00",
            "",
        ]
    ),
)

_ints = st.one_of(
    st.none(),
    st.sampled_from([-(2**31), -32769, -32768, -1, 0, 1, 25, 32767, 32768, 2**31 - 1]),
    st.integers(-(2**31), 2**31 - 1),
)

_flags = st.one_of(
    st.none(),
    st.lists(st.one_of(_text(20), st.none()), max_size=4),
)

_modes = st.one_of(
    st.none(),
    st.sampled_from(["replace", "preserve_run_at", "unsafe_dedupe", "REPLACE", "", "x'--"]),
)

# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def hconn(
    database_factory: DatabaseFactory, errands_template: str
) -> Iterator[psycopg.Connection[Any]]:
    """One database for the whole module (hypothesis runs many examples per test)."""
    with (
        database_factory(template=errands_template, prefix="hostile") as dsn,
        psycopg.connect(dsn, autocommit=True) as connection,
    ):
        yield connection


def _counts(conn: psycopg.Connection[Any]) -> tuple[int, ...]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM errands._jobs), (SELECT count(*) FROM errands._tasks),"
        " (SELECT count(*) FROM errands._queues), (SELECT sum(revision) FROM errands._jobs)"
    ).fetchone()
    assert row is not None
    return tuple(int(v or 0) for v in row)


def _check_error(exc: psycopg.Error) -> None:
    state = exc.sqlstate
    assert state in DOCUMENTED_SQLSTATES, f"undocumented SQLSTATE {state}: {exc}"
    message = exc.diag.message_primary or ""
    assert message, f"SQLSTATE {state} without a message"
    if state == "22023":
        assert message.startswith("errands: "), message


def _expected_flags(flags: list[str | None] | None) -> dict[str, bool] | None:
    if not flags:
        return None
    return {f: True for f in flags if f is not None}


def _check_stored(
    conn: psycopg.Connection[Any],
    job_id: int,
    returned: str,
    spec: dict[str, Any],
) -> None:
    row = conn.execute(
        "SELECT v::text, task_identifier, queue_name, payload::text, priority, max_attempts,"
        " key, flags, run_at IS NOT DISTINCT FROM coalesce(%s::timestamptz, created_at),"
        " attempts, locked_at IS NULL, revision"
        " FROM errands.jobs v WHERE id = %s",
        (spec["run_at"], job_id),
    ).fetchone()
    assert row is not None, "the returned job is not in errands.jobs"
    assert row[0] == returned, "the returned row differs from the stored one"
    assert row[1:8] == (
        spec["identifier"],
        spec["queue_name"],
        "{}" if spec["payload"] is None else spec["payload"],
        0 if spec["priority"] is None else spec["priority"],
        25 if spec["max_attempts"] is None else spec["max_attempts"],
        spec["job_key"],
        _expected_flags(spec["flags"]),
    )
    assert row[8] is True, "run_at differs from what was given"
    assert row[9:] == (0, True, 0)


# --- tests ------------------------------------------------------------------------------------

ADD_JOB = (
    "SELECT r.id, r::text FROM errands.add_job(%s, %s::json, %s, %s::timestamptz, %s::integer,"
    " %s, %s::integer, %s::text[], %s) r"
)


@SETTINGS
@given(
    identifier=st.one_of(_name(128), st.just("task")),
    payload=_payloads,
    queue_name=_name(128),
    run_at=_run_ats,
    max_attempts=_ints,
    job_key=_name(512),
    priority=_ints,
    flags=_flags,
    mode=_modes,
)
def test_add_job_hostile_arguments(
    hconn: psycopg.Connection[Any],
    identifier: str | None,
    payload: str | None,
    queue_name: str | None,
    run_at: str | None,
    max_attempts: int | None,
    job_key: str | None,
    priority: int | None,
    flags: list[str | None] | None,
    mode: str | None,
) -> None:
    hconn.execute("DELETE FROM errands._jobs")
    before = _counts(hconn)
    args = (identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags, mode)
    try:
        row = hconn.execute(ADD_JOB, args).fetchone()
    except psycopg.Error as exc:
        _check_error(exc)
        event(f"refused with {exc.sqlstate}")
        assert _counts(hconn) == before, "a failed add_job wrote something"
        return
    assert row is not None
    spec = {
        "identifier": identifier,
        "payload": payload,
        "queue_name": queue_name,
        "run_at": run_at,
        "max_attempts": max_attempts,
        "job_key": job_key,
        "priority": priority,
        "flags": flags,
    }
    _check_stored(hconn, row[0], row[1], spec)
    event("stored")
    assert _counts(hconn)[0] == before[0] + 1


_specs = st.fixed_dictionaries(
    {
        "identifier": st.one_of(_name(128), st.just("task")),
        "payload": _payloads,
        "queue_name": _name(128),
        "run_at": _run_ats,
        "max_attempts": _ints,
        "job_key": _name(512),
        "priority": _ints,
        "flags": _flags,
    }
)

_FIELDS = (
    "identifier",
    "payload",
    "queue_name",
    "run_at",
    "max_attempts",
    "job_key",
    "priority",
    "flags",
)
_SPEC_SQL = "ROW(%s, %s::json, %s, %s::timestamptz, %s::integer, %s, %s::integer, %s::text[])"


@SETTINGS
@given(specs=st.lists(_specs, min_size=1, max_size=4), preserve=st.one_of(st.none(), st.booleans()))
def test_add_jobs_hostile_specs(
    hconn: psycopg.Connection[Any], specs: list[dict[str, Any]], preserve: bool | None
) -> None:
    keys = [s["job_key"] for s in specs if s["job_key"] is not None]
    assume(len(keys) == len(set(keys)))  # keys shared within a call fold into one job
    hconn.execute("DELETE FROM errands._jobs")
    before = _counts(hconn)
    query = (
        "SELECT r.id, r::text FROM errands.add_jobs(ARRAY["
        + ", ".join([_SPEC_SQL] * len(specs))
        + "]::errands.job_spec[], %s) r"
    )
    params = [s[f] for s in specs for f in _FIELDS] + [preserve]
    try:
        rows = hconn.execute(query, params).fetchall()
    except psycopg.Error as exc:
        _check_error(exc)
        event(f"refused with {exc.sqlstate}")
        assert _counts(hconn) == before, "a failed add_jobs wrote something"
        return
    assert len(rows) == len(specs)
    for (job_id, returned), spec in zip(rows, specs, strict=True):
        _check_stored(hconn, job_id, returned, spec)
    event("stored")
    assert _counts(hconn)[0] == before[0] + len(specs)


def test_documented_sqlstates_are_in_the_docs() -> None:
    root = Path(__file__).resolve().parent.parent
    docs = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    text = "\n".join(p.read_text("utf-8") for p in docs)
    for state in sorted(DOCUMENTED_SQLSTATES):
        assert state in text, f"SQLSTATE {state} is not documented in README.md or docs/"


def test_nul_escape_merged_into_array_job(hconn: psycopg.Connection[Any]) -> None:
    """json keeps \\u0000, jsonb cannot: the array merge of a job key refuses it (22P05)."""
    hconn.execute("DELETE FROM errands._jobs")
    hconn.execute("SELECT errands.add_job('task', '[1]', job_key := 'nul')")
    before = _counts(hconn)
    with pytest.raises(psycopg.Error) as info:
        hconn.execute("""SELECT errands.add_job('task', '["\\u0000"]', job_key := 'nul')""")
    assert info.value.sqlstate == "22P05"
    _check_error(info.value)
    assert _counts(hconn) == before
    row = hconn.execute("SELECT payload::text FROM errands.jobs WHERE key = 'nul'").fetchone()
    assert row == ("[1]",)


def test_roles_end_to_end(db: str, conn: psycopg.Connection[Any]) -> None:
    """LOGIN roles: the web role enqueues but reads nothing; the Python worker runs
    as a grant_worker role (install=False: installing is the owner's job)."""
    import asyncio

    from psycopg.conninfo import make_conninfo

    import errands

    suffix = conn.info.dbname
    web, worker = f"{suffix}_web", f"{suffix}_worker"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(web)))
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(worker)))
    try:
        conn.execute("SELECT errands.grant_enqueue(%s::regrole)", (web,))
        conn.execute("SELECT errands.grant_worker(%s::regrole)", (worker,))
        with psycopg.connect(make_conninfo(db, user=web), autocommit=True) as wc:
            wc.execute("SELECT errands.add_job('e2e', '{\"n\": 1}')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                wc.execute("SELECT payload FROM errands.jobs")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                wc.execute("SELECT errands.get_jobs('w', ARRAY['e2e'])")
        seen: list[Any] = []
        asyncio.run(
            errands.run_once(
                make_conninfo(db, user=worker),
                {"e2e": lambda payload, helpers: seen.append(payload)},
                install=False,
            )
        )
        assert seen == [{"n": 1}]
        assert conn.execute("SELECT count(*) FROM errands.jobs").fetchone() == (0,)
    finally:
        for role in (web, worker):
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))

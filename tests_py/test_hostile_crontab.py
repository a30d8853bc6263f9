"""Crontab text, property-based (hypothesis).

* Valid crontabs generated from the grammar of docs/cron.md (fields with ``*``,
  values, names, ranges, steps and lists; macros; options; payloads; comments,
  blank lines, tabs and CRLF) parse to exactly the items a small Python model of
  cron expects, and ``set_crontab`` stores exactly those items.
* Anything else (random text, valid lines with random edits) either parses (and
  ``set_crontab`` stores what ``parse_crontab`` returned) or fails with SQLSTATE
  22023 naming a line that holds an item, and ``set_crontab`` then changes nothing.
* ``errands cron check FILE`` on the same text prints the items or exits 1 with one
  ``errands: FILE: crontab line N: ...`` line.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from errands.cli import app

DatabaseFactory = Callable[..., AbstractContextManager[str]]

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
#: (low, high, names) of minute, hour, day of month, month, day of week.
FIELDS: list[tuple[int, int, list[str] | None]] = [
    (0, 59, None),
    (0, 23, None),
    (1, 31, None),
    (1, 12, MONTHS),
    (0, 7, DAYS),
]
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
TIME_ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]

# --- the model: one field item -> its text and the values it allows -----------------


@st.composite
def _value(draw: st.DrawFn, lo: int, hi: int, names: list[str] | None) -> tuple[int, str]:
    value = draw(st.integers(lo, hi))
    if names and value - lo < len(names) and draw(st.booleans()):
        name = names[value - lo]
        return value, "".join(c.upper() if draw(st.booleans()) else c for c in name)
    return value, str(value)


@st.composite
def _item(draw: st.DrawFn, field: int) -> tuple[str, set[int]]:
    lo, hi, names = FIELDS[field]
    dow = field == 4
    star_hi = 6 if dow else hi  # * in day of week is 0-6
    kind = draw(st.sampled_from(["*", "*/s", "a", "a/s", "a-b", "a-b/s"]))
    step = draw(st.integers(1, hi - lo + 2))
    if kind == "*":
        text, values = "*", set(range(lo, star_hi + 1))
    elif kind == "*/s":
        text, values = f"*/{step}", set(range(lo, star_hi + 1, step))
    elif kind in ("a", "a/s"):
        a, a_text = draw(_value(lo, hi, names))
        if kind == "a":
            text, values = a_text, {a}
        else:  # N/S means N-max/S (a step of 1: just N)
            text, values = f"{a_text}/{step}", set(range(a, hi + 1, step)) if step > 1 else {a}
    else:
        (a, a_text), (b, b_text) = draw(_value(lo, hi, names)), draw(_value(lo, hi, names))
        if dow and a > b and b == 0:
            b = 7  # sat-sun: Sunday ends a weekday range as 7
        elif a > b:
            (a, a_text), (b, b_text) = (b, b_text), (a, a_text)
        s = step if kind == "a-b/s" else 1
        text = f"{a_text}-{b_text}" + (f"/{step}" if kind == "a-b/s" else "")
        values = set(range(a, b + 1, s))
    if dow:
        values = {0 if v == 7 else v for v in values}
    return text, values


@st.composite
def _field(draw: st.DrawFn, field: int) -> tuple[str, list[int]]:
    items = draw(st.lists(_item(field), min_size=1, max_size=3))
    return ",".join(t for t, _ in items), sorted(set().union(*(v for _, v in items)))


_name_chars = string.ascii_letters + string.digits + "_.:-/@#%\u00e9\u65e5"
_names = st.text(_name_chars, min_size=1, max_size=24)
_period = st.lists(st.sampled_from("wdhms"), min_size=1, max_size=5, unique=True).flatmap(
    lambda units: st.tuples(*(st.integers(0, 999999) for _ in units)).map(
        lambda numbers: "".join(
            f"{n}{u}"
            for u, n in sorted(zip(units, numbers, strict=True), key=lambda p: "wdhms".index(p[0]))
        )
    )
)
_options = st.fixed_dictionaries(
    {},
    optional={
        "id": _names,
        "fill": _period,
        "max": st.integers(1, 32767).map(str),
        "queue": _names,
        "priority": st.integers(-32768, 32767).map(str),
        "jobKey": _names,
        "jobKeyMode": st.sampled_from(["replace", "preserve_run_at"]),
        "tz": st.sampled_from(TIME_ZONES),
    },
)
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12),
)
_payloads = st.dictionaries(
    st.text(string.ascii_letters, max_size=6),
    st.recursive(_json_scalars, lambda c: st.lists(c, max_size=3), max_leaves=6),
    max_size=3,
)
_blank = st.text(" \t", max_size=2)


@st.composite
def _line(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """One valid crontab line and the row parse_crontab must return for it."""
    sep = st.text(" \t", min_size=1, max_size=2)
    if draw(st.integers(0, 4)) == 0:
        macro = draw(st.sampled_from(sorted(MACROS)))
        schedule = macro
        fields = []
        for i, spec in enumerate(MACROS[macro].split()):
            lo, hi, _ = FIELDS[i]
            top = 6 if i == 4 else hi
            fields.append(list(range(lo, top + 1)) if spec == "*" else [int(spec)])
    else:
        parts = [draw(_field(i)) for i in range(5)]
        schedule = "".join(t + draw(sep) for t, _ in parts[:-1]) + parts[-1][0]
        fields = [v for _, v in parts]
    task = draw(_names)
    options = draw(_options)
    payload = draw(st.one_of(st.none(), _payloads))
    text = draw(_blank) + schedule + draw(sep) + task
    if options:
        text += draw(sep) + "?" + "&".join(f"{k}={v}" for k, v in options.items())
    if payload is not None:
        text += draw(sep) + json.dumps(payload, ensure_ascii=draw(st.booleans()))
    text += draw(_blank)
    row = {
        "id": options.get("id", task),
        "task": task,
        "fields": fields,
        "options": {"id": task, "tz": "UTC", **options},
        "payload": payload if payload is not None else {},
    }
    return text, row


@st.composite
def _crontab(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]]]:
    """A valid crontab (items with distinct ids, comments, blank lines) and its rows."""
    items = draw(st.lists(_line(), min_size=0, max_size=5, unique_by=lambda lr: lr[1]["id"]))
    lines: list[str] = []
    rows: list[dict[str, Any]] = []
    for text, row in items:
        for _ in range(draw(st.integers(0, 2))):
            lines.append(draw(st.sampled_from(["", "  ", "\t", "# a comment", " # 0 0 * * * x"])))
        lines.append(text)
        rows.append({**row, "line_number": len(lines)})
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return newline.join(lines) + draw(st.sampled_from(["", newline])), rows


# --- database helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def cconn(
    database_factory: DatabaseFactory, errands_template: str
) -> Iterator[psycopg.Connection[Any]]:
    with (
        database_factory(template=errands_template, prefix="crontab") as dsn,
        psycopg.connect(dsn, autocommit=True) as connection,
    ):
        yield connection


def _parse(conn: psycopg.Connection[Any], text: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT line_number, id, task, minutes, hours, days_of_month, months, days_of_week,"
        " options, payload FROM errands.parse_crontab(%s)",
        [text],
    ).fetchall()
    return [
        {
            "line_number": r[0],
            "id": r[1],
            "task": r[2],
            "fields": list(r[3:8]),
            "options": r[8],
            "payload": r[9],
        }
        for r in rows
    ]


ITEMS = (
    "SELECT id, source, line_number, task, minutes, hours, days_of_month, months, days_of_week,"
    " options, payload FROM errands._crontab_items ORDER BY id"
)


def _items(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(ITEMS).fetchall()]


def _stored(rows: list[dict[str, Any]], source: str) -> list[tuple[Any, ...]]:
    """What set_crontab must store for parsed rows."""
    return sorted(
        (r["id"], source, r["line_number"], r["task"], *r["fields"], r["options"], r["payload"])
        for r in rows
    )


BASE = '0 4 * * * base_digest ?id=base1\n@hourly base_refresh {"k": [1, 2]}'


def _reset(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    conn.execute("DELETE FROM errands._crontab_items")
    conn.execute("SELECT errands.set_crontab(%s, 'hyp')", [BASE])
    return _items(conn)


def _check_error(exc: psycopg.Error, text: str) -> None:
    assert exc.sqlstate == "22023", f"SQLSTATE {exc.sqlstate} for a bad crontab: {exc}"
    message = exc.diag.message_primary or ""
    match = re.match(r"errands: crontab line (\d+): \S", message)
    assert match, message
    number = int(match.group(1))
    lines = re.split(r"\r?\n", text)
    assert 1 <= number <= len(lines), message
    line = lines[number - 1].strip(" \t")
    assert line and not line.startswith("#"), f"the error names a line without an item: {message}"


# --- tests ------------------------------------------------------------------------------------


@SETTINGS
@given(crontab=_crontab())
def test_valid_crontabs_parse_to_the_model(
    cconn: psycopg.Connection[Any], crontab: tuple[str, list[dict[str, Any]]]
) -> None:
    text, expected = crontab
    assert _parse(cconn, text) == expected
    _reset(cconn)
    (count,) = cconn.execute("SELECT errands.set_crontab(%s, 'hyp')", [text]).fetchone() or (0,)
    assert count == len(expected)
    assert _items(cconn) == _stored(expected, "hyp")
    event(f"{len(expected)} items")


_garbage_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
_cronish = st.sampled_from(list("*/-,?&=@#{}[]\"': \t\n0123456789abcdefjmnostuwxyz\u00e9"))


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    """A valid crontab with a few random insertions and deletions."""
    text = draw(_crontab())[0] or "0 4 * * * t"
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:at] + draw(st.text(_cronish, min_size=1, max_size=3)) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(1, 4)) :]
    return text


_hostile_crontabs = st.one_of(
    st.text(_garbage_chars, max_size=80),
    st.text(_cronish, max_size=60),
    _mutated(),
    st.sampled_from(
        [
            '* * * * * t {"a": "\\u0000"}',  # jsonb cannot hold it
            "* * * * * t " + '{"a":' * 100_000 + "1" + "}" * 100_000,  # deeper than the stack
            '* * * * * t {"a": "\\ud800"}',
            "* * * * * t ?tz=" + "x" * 300,
            "999999/999999 * * * * t",
            "1-2-3 * * * * t",
            "*/0 * * * * t",
            "@every_minute t",
            "* * * * * t ?id=a&id=b",
            "* * * * * t\n* * * * * t",
        ]
    ),
)


@SETTINGS
@given(text=_hostile_crontabs)
def test_hostile_crontab_text(cconn: psycopg.Connection[Any], text: str) -> None:
    before = _reset(cconn)
    try:
        rows = _parse(cconn, text)
    except psycopg.Error as exc:
        _check_error(exc, text)
        with pytest.raises(psycopg.Error) as info:
            cconn.execute("SELECT errands.set_crontab(%s, 'hyp')", [text])
        _check_error(info.value, text)
        assert _items(cconn) == before, "a refused crontab changed the stored items"
        event("refused")
        return
    cconn.execute("SELECT errands.set_crontab(%s, 'hyp')", [text])
    assert _items(cconn) == _stored(rows, "hyp")
    event("parsed")


@settings(SETTINGS, max_examples=12)
@given(text=_hostile_crontabs)
def test_cron_check_cli(
    cconn: psycopg.Connection[Any], tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path = tmp_path_factory.mktemp("cron") / "crontab"
    path.write_bytes(text.encode())
    dsn = cconn.info.dsn
    try:  # as the CLI (and the worker's --crontab) reads it: universal newlines
        rows = _parse(cconn, path.read_text(encoding="utf-8"))
    except psycopg.Error:
        rows = None
    result = CliRunner().invoke(app, ["cron", "check", str(path), "-c", dsn, "-n", "1"])
    if rows is None:
        assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"errands: {path}: crontab line "), lines
        assert result.stdout == ""
        event("refused")
    else:
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        headers = [ln for ln in result.stdout.splitlines() if ln.startswith("line ")]
        assert [h.split(":", 1)[0] for h in headers] == [f"line {r['line_number']}" for r in rows]
        event("parsed")


def test_jsonb_payload_errors_name_the_line(cconn: psycopg.Connection[Any]) -> None:
    """Found by the tests above: a \\u0000 escape (22P05) or a payload nested deeper
    than max_stack_depth (54001) is a bad line (22023) like any invalid payload."""
    for payload in ['{"a": "\\u0000"}', '{"a":' * 100_000 + "1" + "}" * 100_000]:
        text = f"# header\n0 4 * * * ok\n* * * * * t {payload}"
        with pytest.raises(psycopg.Error) as info:
            _parse(cconn, text)
        assert info.value.sqlstate == "22023"
        assert (info.value.diag.message_primary or "").startswith(
            "errands: crontab line 3: invalid JSON payload"
        )

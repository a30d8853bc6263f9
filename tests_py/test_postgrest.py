"""The PostgREST recipe of docs/postgrest.md, SQL side: PostgREST itself cannot be
installed here, so each request is driven exactly as PostgREST drives it — a
connection as the LOGIN NOINHERIT authenticator, one transaction per request that
switches role transaction-locally, sets request.jwt.claims with set_config(...,
true) and calls the function with the JSON body as its arguments — and an errands
worker then runs the job. The setup is the page's own SQL block (role names given
a per-database suffix: roles are cluster-wide)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import errands
from tests_py.docs_blocks import ROOT, parse_blocks

PAGE = "docs/postgrest.md"
ROLES = ("authenticator", "web_anon", "web_user", "app_jobs")


def _setup_sql(suffix: str) -> str:
    """The page's first runnable SQL block, its role names suffixed."""
    blocks = parse_blocks((ROOT / PAGE).read_text(encoding="utf-8"), PAGE)
    setup = next(b for b in blocks if b.language == "sql" and b.runs)
    names = re.compile(r"\b(" + "|".join(ROLES) + r")\b")
    return names.sub(lambda m: f"{m.group(1)}_{suffix}", setup.text)


class Roles:
    def __init__(self, suffix: str) -> None:
        self.auth, self.anon, self.user, self.app = (f"{r}_{suffix}" for r in ROLES)
        self.worker = f"worker_{suffix}"


@pytest.fixture
def roles(conn: psycopg.Connection[Any]) -> Iterator[Roles]:
    suffix = conn.info.dbname
    r = Roles(suffix)
    try:
        conn.execute(_setup_sql(suffix).encode())
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(r.worker)))
        conn.execute("SELECT errands.grant_worker(%s::regrole)", [r.worker])
        yield r
    finally:
        conn.execute("DROP SCHEMA IF EXISTS app CASCADE")
        for name in (r.auth, r.anon, r.user, r.app, r.worker):
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _request(
    auth: psycopg.Connection[Any],
    role: str,
    claims: dict[str, Any] | None,
    body: str,
    *,
    set_local_role: bool = False,
    then: str | None = None,
) -> Any:
    """One PostgREST request to POST /rpc/send_welcome_email: one transaction on the
    authenticator's connection; role and claims transaction-local; the JSON body
    becomes the named arguments. ``then``: a statement run in the same request
    after the call (what else the role could do there). Returns the call's value."""
    with auth.transaction():
        if set_local_role:
            auth.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
            auth.execute(
                "SELECT set_config('request.jwt.claims', %s, true)",
                [json.dumps(claims) if claims is not None else ""],
            )
        else:
            auth.execute(
                "SELECT set_config('role', %s, true),"
                " set_config('request.jwt.claims', %s, true),"
                " set_config('request.method', 'POST', true),"
                " set_config('request.path', '/rpc/send_welcome_email', true)",
                [role, json.dumps(claims) if claims is not None else ""],
            )
        row = auth.execute(
            'SELECT app.send_welcome_email("user_id" := a.user_id)'
            ' FROM json_to_record(%s::json) AS a("user_id" integer)',
            [body],
        ).fetchone()
        if then is not None:
            auth.execute(then)
    assert row is not None
    return row[0]


def test_rpc_enqueues_and_a_worker_runs_it(
    db: str, conn: psycopg.Connection[Any], roles: Roles
) -> None:
    claims = {"sub": "42", "role": roles.user}
    with psycopg.connect(make_conninfo(db, user=roles.auth), autocommit=True) as auth:
        # The authenticator alone (NOINHERIT) has none of its roles' privileges.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            auth.execute("SELECT app.send_welcome_email(42)")
        job_id = _request(auth, roles.user, claims, '{"user_id": 42}')
        again = _request(auth, roles.user, claims, '{"user_id": 42}', set_local_role=True)
        assert again == job_id
        # Role and claims were transaction-local: gone after the request.
        assert auth.execute(
            "SELECT current_user, coalesce(current_setting('request.jwt.claims', true), '')"
        ).fetchone() == (roles.auth, "")

    rows = conn.execute("SELECT id, task_identifier, payload, key FROM errands.jobs").fetchall()
    assert rows == [(job_id, "send_welcome_email", {"user_id": 42}, "welcome_email:42")]

    seen: list[Any] = []
    asyncio.run(
        errands.run_once(
            make_conninfo(db, user=roles.worker),
            {"send_welcome_email": lambda payload, helpers: seen.append(payload)},
            install=False,
        )
    )
    assert seen == [{"user_id": 42}]
    assert conn.execute("SELECT count(*) FROM errands.jobs").fetchone() == (0,)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT payload FROM errands.jobs",
        "SELECT errands.add_job('send_welcome_email', '{\"user_id\": 7}')",
        "SELECT payload FROM errands.remove_job('welcome_email:42')",
        "SELECT errands.get_jobs('w', ARRAY['send_welcome_email'])",
        "SELECT errands.worker_complete_jobs('w', ARRAY[1::bigint])",
        "SELECT errands.set_max_payload_bytes(0)",
    ],
)
def test_web_role_gets_nothing_else(
    db: str, conn: psycopg.Connection[Any], roles: Roles, statement: str
) -> None:
    claims = {"sub": "42", "role": roles.user}
    with (
        psycopg.connect(make_conninfo(db, user=roles.auth), autocommit=True) as auth,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        _request(auth, roles.user, claims, '{"user_id": 42}', then=statement)
    # The request rolled back whole: not even its own job is left.
    assert conn.execute("SELECT count(*) FROM errands.jobs").fetchone() == (0,)


def test_refused_requests(db: str, conn: psycopg.Connection[Any], roles: Roles) -> None:
    with psycopg.connect(make_conninfo(db, user=roles.auth), autocommit=True) as auth:
        # Anonymous (no JWT): no EXECUTE on the function (PostgREST: 401).
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _request(auth, roles.anon, None, '{"user_id": 42}')
        # Someone else's email: the function's own 42501 (PostgREST: 403).
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="user 7 may not"):
            _request(auth, roles.user, {"sub": "7", "role": roles.user}, '{"user_id": 42}')
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="got -1"):
            _request(auth, roles.user, {"sub": "-1", "role": roles.user}, '{"user_id": -1}')
    assert conn.execute("SELECT count(*) FROM errands.jobs").fetchone() == (0,)


def test_function_owner_gets_no_other_payload(
    db: str, conn: psycopg.Connection[Any], roles: Roles
) -> None:
    """app_jobs (grant_enqueue only) gets another job's row with payload NULL."""
    conn.execute(
        "SELECT errands.add_job('send_welcome_email', '{\"secret\": 1}', job_key := 'user:1')"
    )
    conn.execute(
        "SELECT errands.add_job('send_welcome_email', '{\"secret\": 2}', job_key := 'user:2')"
    )
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(roles.app)))
        deduped = conn.execute(
            "SELECT key, payload FROM errands.add_job('t', '{}', job_key := 'user:1',"
            " job_key_mode := 'unsafe_dedupe')"
        ).fetchone()
        removed = conn.execute("SELECT key, payload FROM errands.remove_job('user:2')").fetchone()
    assert deduped == ("user:1", None)
    assert removed == ("user:2", None)


def test_payload_limit_change_reaches_open_sessions(
    db: str, conn: psycopg.Connection[Any], roles: Roles
) -> None:
    """set_max_payload_bytes applies at once to a pooled connection that has already
    called add_job (its cached plans are replanned), and the web role cannot lift it."""
    body = json.dumps({"user_id": 42})
    claims = {"sub": "42", "role": roles.user}
    with psycopg.connect(make_conninfo(db, user=roles.auth), autocommit=True) as auth:
        _request(auth, roles.user, claims, body)
        conn.execute("SELECT errands.remove_job('welcome_email:42')")
        conn.execute("SELECT errands.set_max_payload_bytes(5)")
        try:
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="at most 5 bytes"):
                _request(auth, roles.user, claims, body)
            auth.execute("SET errands.max_payload_bytes = 0")
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="at most 5 bytes"):
                _request(auth, roles.user, claims, body)
        finally:
            conn.execute("SELECT errands.set_max_payload_bytes(1048576)")
        assert isinstance(_request(auth, roles.user, claims, body), int)


def test_worker_utils_as_enqueue_role(db: str, conn: psycopg.Connection[Any], roles: Roles) -> None:
    """The Python client as an enqueue-only LOGIN role: remove_job's Job has payload None."""
    conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(roles.app)))
    conn.execute("SELECT errands.add_job('t', '{\"secret\": 1}', job_key := 'user:1')")
    with errands.SyncWorkerUtils(make_conninfo(db, user=roles.app)) as utils:
        mine = utils.add_job("t", {"mine": 1}, job_key="user:2")
        assert mine.payload == {"mine": 1}
        removed = utils.remove_job("user:1")
    assert removed is not None
    assert (removed.key, removed.payload, removed.last_error) == ("user:1", None, None)

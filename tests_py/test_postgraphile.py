"""PostGraphile 5 (the real one, from npm) in front of an ``app`` schema that enqueues.

The pattern of docs/postgraphile.md: ``app.send_welcome_email(user_id)`` calls
``errands.add_job``; PostGraphile exposes it as a GraphQL mutation and connects as a
web role given ``errands.grant_enqueue`` (plus USAGE/EXECUTE on ``app``).  The tests
run the mutation over HTTP, run a worker, and check that the same role can neither
read jobs nor call worker functions, through GraphQL or in SQL.

PostGraphile 5 needs Node >= 22: ``tests_py/postgraphile/package.json`` pulls Node
from npm (the ``node`` package) so Debian's Node 20 is enough to bootstrap.  ``npm ci``
runs once (node_modules is kept, keyed by the lockfile's hash); without npm or the
registry the tests skip, saying why.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from server_support import free_port, post_json, serve

import errands
from errands import Helpers, task
from pgtap.cluster import PgCluster

HERE = Path(__file__).resolve().parent / "postgraphile"
NODE_MODULES = HERE / "node_modules"
STAMP = NODE_MODULES / ".errands-lock-sha256"
NPM_TIMEOUT = 600

pytestmark = pytest.mark.slow

# Network failures of npm: the registry cannot be reached -> skip (anything else fails).
_OFFLINE = ("ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNREFUSED", "ECONNRESET",
            "ENETUNREACH", "EHOSTUNREACH", "network", "proxy")  # fmt: skip


def _lock_hash() -> str:
    return hashlib.sha256((HERE / "package-lock.json").read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def node_bin() -> Path:
    """Node (>= 22, from npm) with PostGraphile installed next to it by ``npm ci``."""
    node = NODE_MODULES / ".bin" / "node"
    wanted = _lock_hash()
    if not (node.exists() and STAMP.exists() and STAMP.read_text() == wanted):
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed (Debian: apt-get install nodejs npm)")
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=HERE, capture_output=True, text=True, timeout=NPM_TIMEOUT,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm ci did not finish within {NPM_TIMEOUT} s (registry unreachable?)")
        if done.returncode != 0:
            output = done.stdout + done.stderr
            if any(word in output for word in _OFFLINE):
                errors = [line for line in output.splitlines() if "error" in line][:4]
                pytest.skip("npm ci cannot reach the npm registry: " + " | ".join(errors))
            raise AssertionError(f"npm ci failed ({done.returncode}):\n{output}")
        if not node.exists():
            raise AssertionError(
                f"npm ci did not install Node 22 ({node}): the `node` package's install "
                "script did not run (allowScripts in package.json?)"
            )
        STAMP.write_text(wanted)
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    assert major >= 22, f"PostGraphile 5 needs Node >= 22, npm gave {version.stdout}"
    return node


APP_SQL = """
CREATE SCHEMA app;
CREATE FUNCTION app.send_welcome_email(user_id int) RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF user_id IS NULL OR user_id <= 0 THEN
        RAISE EXCEPTION 'app: send_welcome_email needs a positive user_id, got %',
            coalesce(user_id::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    RETURN (errands.add_job('send_welcome_email',
                            json_build_object('user_id', user_id))).id;
END
$$;
REVOKE ALL ON FUNCTION app.send_welcome_email(int) FROM PUBLIC;
"""


@contextmanager
def password_required(cluster: PgCluster, dbname: str, role: str) -> Iterator[None]:
    """Make ``role`` authenticate with its password (scram-sha-256) in ``dbname``.

    The test cluster trusts 127.0.0.1; one pg_hba.conf line placed first (first match
    wins) checks this role's password, and goes away afterwards.
    """
    hba = cluster.datadir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host {dbname} {role} 127.0.0.1/32 scram-sha-256\n{original}")
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute("SELECT pg_reload_conf()")
    try:
        yield
    finally:
        hba.write_text(original)
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            admin.execute("SELECT pg_reload_conf()")


@pytest.fixture
def web_dsn(db: str, pg_cluster: PgCluster) -> Iterator[str]:
    """The app schema in ``db`` and a LOGIN web role that may only enqueue through it."""
    role = f"web_{hashlib.sha1(db.encode()).hexdigest()[:8]}"
    password = "web-secret"
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        conn.execute(APP_SQL)
        conn.execute("SELECT errands.grant_enqueue(%s)", [role])
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA app TO {}").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT EXECUTE ON FUNCTION app.send_welcome_email(int) TO {}").format(
                sql.Identifier(role)
            )
        )
    dbname = db.rsplit("/", 1)[1]
    base = f"{pg_cluster.host}:{pg_cluster.port}/{dbname}"
    try:
        with password_required(pg_cluster, dbname, role):
            # The password is really checked (the reload takes effect within moments).
            deadline = time.monotonic() + 10
            while True:
                try:
                    psycopg.connect(f"postgresql://{role}:wrong@{base}").close()
                except psycopg.OperationalError as exc:
                    assert "password authentication failed" in str(exc), exc
                    break
                assert time.monotonic() < deadline, "pg_hba.conf reload not in effect"
                time.sleep(0.05)
            yield f"postgresql://{role}:{quote(password)}@{base}"
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(role)))


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    status, body = post_json(f"{url}/graphql", {"query": query, "variables": variables or {}})
    assert isinstance(body, dict), (status, body)
    return body


SEND = """mutation Send($id: Int!) {
  sendWelcomeEmail(input: {userId: $id}) { result }
}"""


def test_mutation_enqueues_and_a_worker_runs_the_job(
    node_bin: Path, web_dsn: str, db: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {"DATABASE_URL": web_dsn, "PORT": str(port)}
    with serve([str(node_bin), "server.mjs"], port=port, env=env, cwd=HERE,
               log=tmp_path / "postgraphile.log") as server:  # fmt: skip
        answer = graphql(server.url, SEND, {"id": 42})
        assert "errors" not in answer, answer
        job_id = int(answer["data"]["sendWelcomeEmail"]["result"])

        # Bad input: a clear error naming the value, and no job.
        bad = graphql(server.url, SEND, {"id": -1})
        assert bad["data"]["sendWelcomeEmail"] is None
        error = bad["errors"][0]
        assert error["message"] == "app: send_welcome_email needs a positive user_id, got -1"
        assert error["extensions"] == {"code": "22023"}

    with psycopg.connect(db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, task_identifier, payload FROM errands.jobs ORDER BY id"
        ).fetchall()
        assert rows == [(job_id, "send_welcome_email", {"user_id": 42})]

        sent: list[Any] = []

        @task
        def send_welcome_email(payload: Any, helpers: Helpers) -> None:
            sent.append(payload)

        asyncio.run(errands.run_once(db, [send_welcome_email]))
        assert sent == [{"user_id": 42}]
        assert conn.execute("SELECT count(*) FROM errands.jobs").fetchone() == (0,)


def test_web_role_cannot_read_jobs_or_work_them(
    node_bin: Path, web_dsn: str, db: str, tmp_path: Path
) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        errands.add_job(conn, "reset_password", {"token": "s3cret"})
    port = free_port()
    env = {"DATABASE_URL": web_dsn, "PORT": str(port)}
    with serve([str(node_bin), "server.mjs"], port=port, env=env, cwd=HERE,
               log=tmp_path / "postgraphile.log") as server:  # fmt: skip
        # The schema shows the one mutation and nothing of errands.
        schema = graphql(
            server.url,
            """{ __schema {
            queryType { fields { name } } mutationType { fields { name } }
            types { name } } }""",
        )
        mutations = {f["name"] for f in schema["data"]["__schema"]["mutationType"]["fields"]}
        assert mutations == {"sendWelcomeEmail"}
        queries = {f["name"] for f in schema["data"]["__schema"]["queryType"]["fields"]}
        assert not {name for name in queries if "job" in name.lower()}, queries
        types = {t["name"] for t in schema["data"]["__schema"]["types"]}
        assert not {name for name in types if "job" in name.lower()}, types

        for attempt in (
            "{ allJobs { nodes { payload } } }",
            "{ jobs { nodes { payload } } }",
            'mutation { getJobs(input: {workerId: "w"}) { clientMutationId } }',
            "mutation { completeJobs(input: {jobIds: [1]}) { clientMutationId } }",
        ):
            answer = graphql(server.url, attempt)
            assert "data" not in answer or answer["data"] is None, (attempt, answer)
            assert "Cannot query field" in answer["errors"][0]["message"], (attempt, answer)

    # The same role in SQL: no SELECT on the jobs, no worker functions.
    with psycopg.connect(web_dsn, autocommit=True) as web:
        for statement in (
            "SELECT payload FROM errands.jobs",
            "SELECT * FROM errands._jobs",
            "SELECT * FROM errands.get_jobs('w', ARRAY['send_welcome_email'])",
            "SELECT errands.complete_jobs(ARRAY[1::bigint])",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                web.execute(statement)
    with psycopg.connect(db, autocommit=True) as conn:
        # The job is still there, untouched.
        assert conn.execute(
            "SELECT task_identifier, attempts, locked_by FROM errands.jobs"
        ).fetchall() == [("reset_password", 0, None)]

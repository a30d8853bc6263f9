"""The dashboard's safety over plain HTTP against a real server (``errands
dashboard`` in its own process, on a free port of 127.0.0.1): the bind refusal,
token and basic auth, CSRF, read-only mode, escaping of hostile payloads and names,
1 MB and deeply nested payloads, clear 400 pages for bad filters, and the role
``errands.grant_dashboard`` makes.  Pages and actions: test_dashboard_pages.py.

One database and one server per module; each test makes the jobs it changes, so the
tests do not depend on their order."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dashboard_data import ATTR_BREAKER, HOSTILE, add, fail, ids, snapshot, state
from dashboard_fixtures import (
    database_fixtures,
    logs_fixture,
    require_dashboard_extra,
    server_fixtures,
)
from dashboard_support import PAGES, UNSET, Client, Page, dashboard, dashboard_argv, flash
from psycopg import sql
from server_support import Server, free_port
from worker_support import wait_until

require_dashboard_extra()

pytestmark = pytest.mark.slow


# --- fixtures --------------------------------------------------------------------


dsn, conn = database_fixtures("dash_http", retention="1 hour")
logs = logs_fixture("dash_http")
server, client = server_fixtures()


@pytest.fixture(scope="module")
def ro_server(dsn: str, logs: Path) -> Iterator[Server]:
    with dashboard(dsn, logs / "dashboard_ro.log", read_only=True) as value:
        yield value


@pytest.mark.parametrize(
    "name", ['ops & "billing" <b>#1</b>?x=1%20', "tenant/42", "sync<img src=x onerror=alert(5)>"]
)
def test_odd_queue_and_task_names_are_escaped_and_their_forms_reach_them(
    client: Client, conn: psycopg.Connection[Any], name: str
) -> None:
    # Names are free text (1-128 characters): they go into URLs and HTML.
    job = add(conn, name, {}, queue_name=name, max_attempts=1)
    fail(conn, job, "boom")
    for path in (
        "/queues",
        "/?refresh=0",
        "/jobs?" + urllib.parse.urlencode({"queue": name}),
        f"/jobs/{job}",
    ):
        response = client.get(path)
        assert response.status == 200, (path, response.text[:2000])
        assert "<b>#1" not in response.text and "<img src=x" not in response.text, path
    listing = client.get("/jobs?" + urllib.parse.urlencode({"queue": name}))
    assert listing.page.job_ids() == [job]
    page = client.get("/queues").page
    rows = page.find("tr", "queue-row", data_queue=name)
    assert len(rows) == 1, [e.attrs for e in page.find("tr", "queue-row")]
    assert len(page.find("tr", "task-row", data_task=name)) == 1
    for kind, view, column in (
        ("queues", "queues", "queue_name"),
        ("tasks", "task_limits", "task_identifier"),
    ):
        forms = [
            f
            for f in page.forms
            if urllib.parse.unquote(urllib.parse.urlsplit(f.action).path) == f"/{kind}/{name}/pause"
        ]
        assert len(forms) == 1, (kind, [f.action for f in page.forms])
        response = client.post(urllib.parse.urlsplit(forms[0].action).path, forms[0].fields)
        assert response.status == 303, (kind, response.status, response.text[:500])
        paused = conn.execute(
            sql.SQL("SELECT paused FROM errands.{} WHERE {} = %s").format(
                sql.Identifier(view), sql.Identifier(column)
            ),
            [name],
        ).fetchone()
        assert paused == (True,), kind


# --- safety ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com"])
def test_a_non_loopback_host_without_credentials_is_refused(dsn: str, host: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env["DATABASE_URL"] = dsn
    done = subprocess.run(
        dashboard_argv(port, host), capture_output=True, text=True, env=env, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert host in output, output
    with pytest.raises(OSError):  # nothing listens
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_non_loopback_host_with_a_token_serves_only_with_it(dsn: str, logs: Path) -> None:
    with dashboard(dsn, logs / "dashboard_any.log", host="0.0.0.0", token="s3cret-t0ken") as srv:
        assert Client(srv.url).get("/").status in (401, 403)
        answer = Client(srv.url, {"Authorization": "Bearer s3cret-t0ken"}).get("/?refresh=0")
        assert answer.status == 200 and answer.page.has_id("page-overview")


def test_a_token_guards_every_route(dsn: str, logs: Path, conn: psycopg.Connection[Any]) -> None:
    token = "tok-" + "x7" * 16
    job = add(conn, "send_email", {"to": "ada@example.com"}, queue_name="token")
    with dashboard(dsn, logs / "dashboard_token.log", token=token) as srv:
        anonymous = Client(srv.url)
        for path in [*PAGES, f"/jobs/{job}", "/static/does-not-matter.css"]:
            response = anonymous.get(path)
            assert response.status in (401, 403), (path, response.status)
            assert "ada@example.com" not in response.text
        wrong = Client(srv.url, {"Authorization": "Bearer " + token[:-1]})
        assert wrong.get("/").status in (401, 403)
        bearer = Client(srv.url, {"Authorization": "Bearer " + token})
        for path in [*PAGES, f"/jobs/{job}"]:
            assert bearer.get(path + "?refresh=0").status == 200, path
        # ?token= sets an HttpOnly cookie; the cookie alone lets the browser in.
        browser = Client(srv.url)
        first = browser.get("/?refresh=0&token=" + token)
        assert first.status in (200, 303), first.status
        cookie = [c for c in first.cookies() if "errands_csrf" not in c]
        assert cookie and all("httponly" in c.lower() for c in cookie), first.cookies()
        assert browser.get(f"/jobs/{job}").status == 200
        # An action without the token does nothing, even with a valid CSRF pair.
        csrf = bearer.get(f"/jobs/{job}").page.form(f"/jobs/{job}/cancel").fields
        before = snapshot(conn)
        response = bearer.post(
            f"/jobs/{job}/cancel",
            {**csrf, "action": "cancel"},
            headers={"Authorization": "Bearer not-" + token},
        )
        assert response.status in (401, 403)
        assert snapshot(conn) == before
        # With it, the action goes through.
        response = bearer.post(f"/jobs/{job}/cancel", {**csrf, "action": "cancel"})
        assert response.status == 303
        assert state(conn, job) == "cancelled"


def test_basic_auth_users_from_the_environment(dsn: str, logs: Path) -> None:
    def basic(user: str, password: str) -> dict[str, str]:
        value = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": "Basic " + value}

    with dashboard(dsn, logs / "dashboard_basic.log", users="alice:pw1,bob:pw2") as srv:
        response = Client(srv.url).get("/")
        assert response.status == 401
        assert response.headers.get("WWW-Authenticate", "").lower().startswith("basic")
        assert Client(srv.url, basic("alice", "pw1")).get("/jobs").status == 200
        assert Client(srv.url, basic("bob", "pw2")).get("/queues").status == 200
        assert Client(srv.url, basic("alice", "pw2")).get("/").status == 401
        assert Client(srv.url, basic("carol", "pw1")).get("/").status == 401


def test_csrf_double_submit_is_required_for_every_post(
    client: Client, conn: psycopg.Connection[Any], server: Server
) -> None:
    job = add(conn, "send_email", {"to": "ada@example.com"}, queue_name="csrf")
    page = client.get(f"/jobs/{job}")
    cookie = client.cookie("errands_csrf")
    assert cookie, page.cookies()
    assert any("samesite=strict" in c.lower() for c in page.cookies() if "errands_csrf" in c)
    forms = page.page.post_forms()
    assert forms and all(f.fields.get("csrf_token") == cookie for f in forms), forms
    before = snapshot(conn)
    attempts = [
        (client, {"action": "cancel"}),  # no token
        (client, {"action": "cancel", "csrf_token": ""}),
        (client, {"action": "cancel", "csrf_token": cookie[::-1] + "x"}),  # wrong token
        (Client(server.url), {"action": "cancel", "csrf_token": cookie}),  # no cookie
    ]
    for who, fields in attempts:
        response = who.post(f"/jobs/{job}/cancel", fields)
        assert response.status == 403, (fields, response.status)
        assert "app;dur=" in response.headers.get("Server-Timing", "")
    for path, fields in [
        ("/jobs/bulk", {"action": "cancel", "queue": "csrf", "confirm": "yes"}),
        ("/queues/csrf/pause", {}),
        ("/tasks/send_email/pause", {}),
        (f"/jobs/{job}/remove", {"action": "remove"}),
    ]:
        assert client.post(path, fields).status == 403, path
    assert snapshot(conn) == before
    assert state(conn, job) == "pending"


def test_read_only_mode_has_no_forms_and_refuses_every_post(
    ro_server: Server, conn: psycopg.Connection[Any]
) -> None:
    job = add(conn, "reports.build", {}, queue_name="readonly", max_attempts=1)
    fail(conn, job, "boom")
    client = Client(ro_server.url)
    for path in [*PAGES, f"/jobs/{job}", "/jobs?queue=readonly"]:
        response = client.get(path)
        assert response.status == 200, path
        assert response.page.post_forms() == [], (path, response.page.post_forms())
        assert not response.page.find("button", name="action"), path
    csrf = client.cookie("errands_csrf") or "anything"
    before = snapshot(conn)
    for path in (
        f"/jobs/{job}/retry",
        f"/jobs/{job}/remove",
        "/jobs/bulk",
        "/queues/readonly/pause",
        "/tasks/reports.build/pause",
    ):
        fields = {"csrf_token": csrf, "action": "retry", "confirm": "yes", "queue": "readonly"}
        assert client.post(path, fields).status == 403, path
    assert snapshot(conn) == before


def test_hostile_payloads_and_errors_are_shown_escaped(
    client: Client, conn: psycopg.Connection[Any]
) -> None:
    payload = {"html": HOSTILE, "attr": ATTR_BREAKER, "</pre>": "<b>bold</b>"}
    job = add(
        conn,
        "webhooks.deliver",
        payload,
        queue_name="hostile",
        max_attempts=1,
        job_key=f"key{ATTR_BREAKER}",
    )
    fail(conn, job, f"<img src=x onerror=window.pwned=4>{ATTR_BREAKER}")
    for path in (
        f"/jobs/{job}",
        "/jobs?queue=hostile",
        "/jobs?state=failed",
        "/?refresh=0",
        "/queues",
    ):
        response = client.get(path)
        assert response.status == 200, path
        body = response.text
        assert "<script>window.pwned" not in body, path
        assert "<img src=x" not in body and "<b>bold" not in body, path
        assert 'onmouseover="window.pwned' not in body, path
        assert not response.page.find(onmouseover="window.pwned=2"), path
    page = client.get(f"/jobs/{job}").page
    assert json.loads(page.by_id("payload").text) == payload  # shown, as text, whole
    assert "<img src=x onerror=window.pwned=4>" in page.by_id("errors").text
    # Filters echoed back into the form are escaped too.
    response = client.get("/jobs?" + urllib.parse.urlencode({"task": ATTR_BREAKER + HOSTILE}))
    assert response.status in (200, 400)
    assert "<script>window.pwned" not in response.text
    assert not response.page.find(onmouseover="window.pwned=2")


def test_a_1_mb_payload_and_200_deep_nesting_render(
    client: Client, conn: psycopg.Connection[Any]
) -> None:
    big = {"blob": "x" * 1_000_000, "tail": HOSTILE}
    deep: Any = {"leaf": HOSTILE}
    for _ in range(199):
        deep = {"a": deep}
    big_id = add(conn, "resize_image", big, queue_name="huge")
    deep_id = add(conn, "resize_image", deep, queue_name="huge")
    listing = client.get("/jobs?queue=huge")
    assert listing.status == 200
    assert sorted(listing.page.job_ids()) == [big_id, deep_id]
    assert "<script>window.pwned" not in listing.text
    for job_id in (big_id, deep_id):
        response = client.get(f"/jobs/{job_id}")
        assert response.status == 200, (job_id, response.text[:2000])
        assert "<script>window.pwned" not in response.text
        shown = response.page.by_id("payload").text
        assert "&lt;script&gt;" in response.text or "\\u003cscript" in response.text
        assert shown.count('"a"') in (0, 199), "the nesting is shown whole or summarised"
    assert len(listing.text) < 200_000, "the list shows no 1 MB payload in full"


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("state", "bogus-state"),
        ("since", "not-a-date"),
        ("until", "2026-13-45"),
        ("payload", "{not json"),
        ("sort", "password"),
        ("limit", "lots"),
        ("limit", "-3"),
        ("limit", "0"),
        ("limit", "1001"),
        ("after", "garbage-cursor"),
    ],
)
def test_a_bad_filter_value_gives_a_400_page_naming_it(
    client: Client, param: str, value: str
) -> None:
    response = client.get("/jobs?" + urllib.parse.urlencode({param: value}))
    assert response.status == 400, (param, value, response.status, response.text[:2000])
    assert response.headers.get_content_type() == "text/html"
    assert value in "".join(e.text for e in Page(response.text).find("body")), response.text


# --- the dashboard role ----------------------------------------------------------


@pytest.fixture
def dashboard_roles(dsn: str, conn: psycopg.Connection[Any]) -> Iterator[dict[str, str]]:
    """Two login roles made by errands.grant_dashboard: read-only and read-write."""
    dbname = conn.info.dbname
    names = {"ro": f"{dbname}_dash_ro", "rw": f"{dbname}_dash_rw"}
    for kind, name in names.items():
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        conn.execute("SELECT errands.grant_dashboard(%s::regrole, %s)", [name, kind == "ro"])
    try:
        yield {kind: psycopg.conninfo.make_conninfo(dsn, user=name) for kind, name in names.items()}
    finally:
        for name in names.values():
            conn.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(name)))


def test_the_grant_dashboard_role_loads_every_page_and_acts_only_when_allowed(
    dashboard_roles: dict[str, str], conn: psycopg.Connection[Any], logs: Path
) -> None:
    job = add(conn, "reports.build", {"secret": "s"}, queue_name="role", max_attempts=1)
    fail(conn, job, "boom")
    flow = conn.execute(
        "SELECT DISTINCT flow_id FROM errands.add_flow(%s::jsonb)",
        [json.dumps({"steps": [{"name": "only", "task": "send_email"}]})],
    )
    flow_id = flow.fetchone()[0]  # type: ignore[index]
    conn.execute("SELECT errands.set_crontab('0 4 * * * nightly.cleanup')")
    pages = [*PAGES, f"/jobs/{job}", f"/flows/{flow_id}", "/jobs?state=failed&task=reports.build"]
    with dashboard(dashboard_roles["ro"], logs / "dashboard_role_ro.log", read_only=True) as srv:
        client = Client(srv.url)
        for path in pages:
            response = client.get(path)
            assert response.status == 200, (path, response.text[:3000], srv.output()[-3000:])
    with dashboard(dashboard_roles["rw"], logs / "dashboard_role_rw.log") as srv:
        client = Client(srv.url)
        for path in pages:
            assert client.get(path).status == 200, (path, srv.output()[-3000:])
        assert flash(client, client.submit(f"/jobs/{job}", f"/jobs/{job}/retry", "retry"))
        assert state(conn, job) == "pending"
        assert flash(client, client.submit("/queues", "/queues/role/pause"))
        assert flash(client, client.submit("/queues", "/queues/role/resume"))
        assert flash(client, client.submit(f"/jobs/{job}", f"/jobs/{job}/cancel", "cancel"))
        assert state(conn, job) == "cancelled"
        assert flash(client, client.submit("/cron", "/cron/nightly.cleanup/run"))
        assert wait_until(
            lambda: ids(conn, "task_identifier = 'nightly.cleanup'"), what="the cron item's job"
        )
    # Misconfigured: the read-only role behind a dashboard that shows actions. An
    # action is refused by PostgreSQL: a clear answer (no 500), nothing changed.
    other = add(conn, "reports.build", {}, queue_name="role")
    with dashboard(dashboard_roles["ro"], logs / "dashboard_role_mixed.log") as srv:
        client = Client(srv.url)
        before = snapshot(conn)
        response = client.submit(f"/jobs/{other}", f"/jobs/{other}/cancel", "cancel")
        assert response.status in (303, 403), (response.status, response.text[:2000])
        if response.status == 303:
            assert "permission" in flash(client, response).lower()
        assert snapshot(conn) == before
    # Neither role can enqueue, fetch or write the tables; the read-only one cannot act.
    forbidden = [
        "SELECT errands.add_job('send_email')",
        "SELECT * FROM errands.get_jobs('w1', NULL)",
        "SELECT count(*) FROM errands._jobs",  # the private tables: never
        "DELETE FROM errands._jobs",
        "UPDATE errands._jobs SET attempts = 0",
        "SELECT errands.set_crontab('* * * * * send_email')",
        "SELECT errands.grant_dashboard(current_user::regrole, false)",
    ]
    ro_only = [
        f"SELECT * FROM errands.cancel_jobs(ARRAY[{job}]::bigint[])",
        "SELECT errands.pause_queue('role')",
        f"SELECT * FROM errands.reschedule_jobs(ARRAY[{job}]::bigint[])",
    ]
    for kind, statements in (("rw", forbidden), ("ro", forbidden + ro_only)):
        with psycopg.connect(dashboard_roles[kind], autocommit=True) as role_conn:
            assert role_conn.execute("SELECT count(*) FROM errands.jobs").fetchone() is not None
            for statement in statements:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    role_conn.execute(statement)


# --- error pages and the favicon -------------------------------------------------


def test_401_403_404_are_html_pages_with_the_nav_and_escaped(
    client: Client, ro_server: Server, dsn: str, logs: Path
) -> None:
    hostile = "/jobs/<script>x</script>"
    for response, status in (
        (client.get("/jobs/987654321"), 404),
        (client.get("/no/such/page?x=<b>"), 404),
        (client.get(urllib.parse.quote(hostile)), 404),
        (Client(ro_server.url).post("/jobs/1/cancel", {"action": "cancel"}), 403),
        (client.post("/jobs/1/cancel", {"action": "cancel", "csrf_token": "wrong"}), 403),
    ):
        assert response.status == status, (status, response.text[:500])
        assert response.headers["Content-Type"].startswith("text/html")
        page = response.page
        assert page.by_id("page-error").attrs["data-status"] == str(status)
        assert {a.attrs.get("href") for a in page.find("a")} >= set(PAGES)
        assert "<script>x" not in response.text
    with dashboard(dsn, logs / "dashboard_401.log", users="alice:pw1") as srv:
        response = Client(srv.url).get("/jobs?error=<script>")
        assert response.status == 401
        assert response.headers.get("WWW-Authenticate", "").lower().startswith("basic")
        assert response.page.by_id("page-error").attrs["data-status"] == "401"
        assert {a.attrs.get("href") for a in response.page.find("a")} >= set(PAGES)
        assert "<script>" not in response.text


def test_the_browser_gets_our_favicon(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("image/svg+xml")
    assert response.text.startswith("<svg") and "<script" not in response.text
    page = client.get("/?refresh=0").page
    icons = [link.attrs["href"] for link in page.find("link", rel="icon")]
    assert icons == ["/static/favicon.svg"]
    assert client.get(icons[0]).text == response.text

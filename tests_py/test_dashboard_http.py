"""The dashboard over plain HTTP against a real server (``errands dashboard`` in its
own process, on a free port of 127.0.0.1): every page, filters and keyset pages,
actions as one SQL call each, and the safety rules: the bind refusal, token and
basic auth, CSRF, read-only mode, escaping of hostile payloads, clear 400 pages for
bad filters, and the role ``errands.grant_dashboard`` makes.

One database and one server per module (started once); each test makes the jobs it
changes, so the tests do not depend on their order."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dashboard_support import PAGES, UNSET, Client, Page, dashboard, dashboard_argv
from psycopg import sql
from server_support import Server, free_port, serve
from worker_support import wait_until

for _module in ("starlette", "jinja2", "uvicorn", "multipart"):
    pytest.importorskip(
        _module,
        reason="the dashboard extra is not installed: "
        "pip install -e '.[test]' (or errands[dashboard])",
    )

pytestmark = pytest.mark.slow

SERVER_TIMING = re.compile(r"\bapp;dur=\d+(\.\d+)?\b")
HOSTILE = "<script>window.pwned=1</script>"
ATTR_BREAKER = '"\' onmouseover="window.pwned=2" x=\''


# --- fixtures --------------------------------------------------------------------


@pytest.fixture(scope="module")
def dsn(database_factory: Any, errands_template: str) -> Iterator[str]:
    with database_factory(template=errands_template, prefix="dash_http") as value:
        with psycopg.connect(value, autocommit=True) as conn:
            conn.execute("SELECT errands.set_retention('1 hour')")
        yield value


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard_http")


@pytest.fixture(scope="module")
def server(dsn: str, logs: Path) -> Iterator[Server]:
    with dashboard(dsn, logs / "dashboard.log") as value:
        yield value


@pytest.fixture(scope="module")
def ro_server(dsn: str, logs: Path) -> Iterator[Server]:
    with dashboard(dsn, logs / "dashboard_ro.log", read_only=True) as value:
        yield value


@pytest.fixture
def client(server: Server) -> Client:
    return Client(server.url)


def add(conn: psycopg.Connection[Any], task: str, payload: Any = None, **options: Any) -> int:
    """errands.add_job(task, payload, **options) -> the new job's id."""
    args = [sql.SQL("%s"), sql.SQL("%s::json")]
    args += [sql.SQL("{} => %s").format(sql.Identifier(k)) for k in options]
    query = sql.SQL("SELECT id FROM errands.add_job({})").format(sql.SQL(", ").join(args))
    row = conn.execute(query, [task, json.dumps(payload or {}), *options.values()]).fetchone()
    assert row is not None
    return int(row[0])


def fail(conn: psycopg.Connection[Any], job_id: int, message: str) -> None:
    conn.execute("SELECT errands.permanently_fail_jobs(%s, %s)", [[job_id], message])


def state(conn: psycopg.Connection[Any], job_id: int) -> str | None:
    """The job's state (errands.jobs, else errands.finished_jobs); None: gone."""
    row = conn.execute(
        "SELECT state FROM errands.jobs WHERE id = %(id)s"
        " UNION ALL SELECT state FROM errands.finished_jobs WHERE id = %(id)s",
        {"id": job_id},
    ).fetchone()
    return None if row is None else str(row[0])


def snapshot(conn: psycopg.Connection[Any]) -> Any:
    """Everything an action could change: the jobs, the history and the limits."""
    return conn.execute(
        "SELECT (SELECT json_agg(j ORDER BY id)::text FROM errands.jobs j),"
        " (SELECT json_agg(f ORDER BY id)::text FROM errands.finished_jobs f),"
        " (SELECT json_agg(l ORDER BY kind, name)::text FROM errands.limits l)"
    ).fetchone()


def ids(conn: psycopg.Connection[Any], where: str, params: Any = None) -> list[int]:
    rows = conn.execute(f"SELECT id FROM errands.jobs WHERE {where} ORDER BY id", params)
    return [int(r[0]) for r in rows.fetchall()]


def flash(client: Client, response: Any) -> str:
    """Follow the 303 of an action; the flash message of the page it leads to."""
    assert response.status == 303, (response.status, response.text[:2000])
    location = response.headers["Location"]
    page = client.get(urllib.parse.urlsplit(location)._replace(scheme="", netloc="").geturl())
    assert page.status == 200, page.text[:2000]
    return page.page.by_id("flash").text.strip()


# --- pages -----------------------------------------------------------------------


def test_every_page_answers_with_its_main_and_server_timing(
    client: Client, conn: psycopg.Connection[Any]
) -> None:
    job = add(conn, "send_email", {"to": "ada@example.com"}, queue_name="emails")
    rows = conn.execute(
        "SELECT DISTINCT flow_id FROM errands.add_flow(%s::jsonb)",
        [
            json.dumps(
                {
                    "steps": [
                        {"name": "fetch", "task": "resize_image"},
                        {"name": "mail", "task": "send_email", "depends_on": ["fetch"]},
                    ]
                }
            )
        ],
    ).fetchall()
    flow_id = rows[0][0]
    pages = {**PAGES, f"/jobs/{job}": "page-job", f"/flows/{flow_id}": "page-flow"}
    for path, main in pages.items():
        response = client.get(path + ("&" if "?" in path else "?") + "refresh=0")
        assert response.status == 200, (path, response.text[:2000])
        assert response.headers.get_content_type() == "text/html", path
        page = response.page
        assert [e.tag for e in page.find(id=main)] == ["main"], path
        assert SERVER_TIMING.search(response.headers.get("Server-Timing", "")), (
            path,
            response.headers.get("Server-Timing"),
        )
        # Nothing fetched from elsewhere: every script, stylesheet and image is ours.
        for element in page.elements:
            for attr in ("src", "href"):
                value = element.attrs.get(attr, "")
                if element.tag in ("script", "link", "img", "iframe"):
                    assert not re.match(r"(?i)^(https?:)?//", value) or value.startswith(
                        client.base
                    ), (path, element)
    # The stylesheet the pages link is served (our own CSS, under /static).
    overview = client.get("/?refresh=0").page
    sheets = [e.attrs["href"] for e in overview.find("link") if e.attrs.get("rel") == "stylesheet"]
    assert sheets, "the overview links no stylesheet"
    for href in sheets:
        path = urllib.parse.urlsplit(href).path
        assert path.startswith("/static/"), href
        css = client.get(path)
        assert css.status == 200 and css.headers.get_content_type() == "text/css", href
    # The job page shows the job; the flow page draws its steps.
    job_page = client.get(f"/jobs/{job}").page
    assert json.loads(job_page.by_id("payload").text) == {"to": "ada@example.com"}
    graph = client.get(f"/flows/{flow_id}").page
    assert graph.by_id("flow-graph").tag == "svg"
    steps = {int(e.attrs["data-job-id"]) for e in graph.find("g", "step")}
    assert steps == {
        r[0]
        for r in conn.execute("SELECT job_id FROM errands.flow_steps WHERE flow_id = %s", [flow_id])
    }
    # The overview draws its three charts.
    for chart in ("chart-throughput", "chart-failures", "chart-wait"):
        element = overview.by_id(chart)
        assert element.tag == "svg" and "chart" in element.classes, chart


def test_unknown_job_and_flow_are_404(client: Client) -> None:
    for path in ("/jobs/987654321", "/flows/987654321"):
        response = client.get(path)
        assert response.status == 404, (path, response.status, response.text[:500])
    assert client.get("/jobs/not-a-number").status in (400, 404)


# --- filters and pagination --------------------------------------------------------


def test_filters_select_exactly_the_matching_jobs(
    client: Client, conn: psycopg.Connection[Any]
) -> None:
    tag = "filters"  # a queue of its own: the other tests' jobs stay out of the way
    a = add(
        conn,
        "send_email",
        {"to": "ada@example.com", "plan": "pro"},
        queue_name=tag,
        job_key="welcome:ada",
    )
    b = add(conn, "send_email", {"to": "bob@example.com", "plan": "free"}, queue_name=tag)
    c = add(conn, "reports.build", {"month": "2026-11"}, queue_name=tag, max_attempts=1)
    fail(conn, c, "disk full on /var/reports")
    d = add(
        conn,
        "webhooks.deliver",
        {"event": "paid"},
        queue_name=tag,
        run_at=conn.execute("SELECT now() + interval '1 day'").fetchone()[0],
    )  # type: ignore[index]

    def shown(**params: str) -> list[int]:
        response = client.get("/jobs?" + urllib.parse.urlencode({"queue": tag, **params}))
        assert response.status == 200, (params, response.text[:2000])
        return sorted(response.page.job_ids())

    assert shown() == [a, b, c, d]
    assert shown(state="failed") == [c]
    assert shown(state="scheduled") == [d]
    assert shown(state="pending") == [a, b]
    assert shown(task="send_email") == [a, b]
    assert shown(key="welcome:ada") == [a]
    assert shown(error="disk full") == [c]
    assert shown(payload='{"plan": "pro"}') == [a]
    assert shown(payload='{"event": "paid"}') == [d]
    # Times filter run_at or created_at (both now, but d runs tomorrow).
    now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    hour_ago, later = (now - timedelta(hours=1)).isoformat(), (now + timedelta(hours=2)).isoformat()
    assert shown(since=hour_ago) == [a, b, c, d]
    assert shown(until=hour_ago) == []
    assert shown(since=later) in ([d], [])
    assert shown(since=hour_ago, until=later) in ([a, b, c], [a, b, c, d])
    # The state badges say the state words of docs/states.md.
    page = client.get(f"/jobs?queue={tag}").page
    badges = {e.text.strip() for e in page.find("span", "state")}
    assert {"pending", "failed", "scheduled"} <= badges, badges
    assert page.find("span", "state-failed") and page.find("span", "state-scheduled")


def test_keyset_pages_cover_every_job_once_in_sort_order(
    client: Client, conn: psycopg.Connection[Any]
) -> None:
    tag = "pages"
    # One transaction: the same run_at (now()) and attempts for all, so the sorts by
    # run_at and attempts must break their ties to page without loss or repeat.
    with conn.transaction():
        made = [add(conn, "resize_image", {"n": n}, queue_name=tag) for n in range(7)]
    sorts = (("id", made), ("-id", made[::-1]), ("run_at", None), ("-attempts", None))
    for sort, expected in sorts:
        seen: list[int] = []
        path: str | None = f"/jobs?queue={tag}&limit=3&sort={sort}"
        pages = 0
        while path is not None:
            response = client.get(path)
            assert response.status == 200, (path, response.text[:2000])
            page = response.page
            rows = page.job_ids()
            assert 0 < len(rows) <= 3, (path, rows)
            seen += rows
            pages += 1
            links = page.find("a", id="next-page")
            path = None
            if links:
                href = urllib.parse.urlsplit(links[0].attrs["href"])
                path = href.path + "?" + href.query
            assert pages <= 4, f"more pages than jobs: {seen}"
        if expected is not None:
            assert seen == expected, (sort, seen)
        assert sorted(seen) == made, (sort, seen)
        assert pages == 3, (sort, pages)


# --- actions ---------------------------------------------------------------------


def test_single_actions_each_change_the_job_and_flash(
    client: Client, conn: psycopg.Connection[Any]
) -> None:
    failed = add(conn, "reports.build", {"month": "2026-10"}, queue_name="actions", max_attempts=1)
    fail(conn, failed, "timeout talking to the warehouse")
    assert state(conn, failed) == "failed"
    response = client.submit(f"/jobs/{failed}", f"/jobs/{failed}/retry", "retry")
    assert flash(client, response)
    assert state(conn, failed) == "pending"  # due now, attempts given back

    doomed = add(conn, "send_email", {"to": "eve@example.com"}, queue_name="actions")
    assert flash(client, client.submit(f"/jobs/{doomed}", f"/jobs/{doomed}/cancel", "cancel"))
    assert state(conn, doomed) == "cancelled"

    removed = add(conn, "send_email", {"to": "mallory@example.com"}, queue_name="actions")
    assert flash(client, client.submit(f"/jobs/{removed}", f"/jobs/{removed}/remove", "remove"))
    assert state(conn, removed) is None

    later = add(conn, "send_email", {"to": "trent@example.com"}, queue_name="actions")
    when = "2031-01-02T03:04:05+00:00"
    response = client.submit(
        f"/jobs/{later}", f"/jobs/{later}/reschedule", "reschedule", run_at=when
    )
    assert flash(client, response)
    row = conn.execute(
        "SELECT run_at = %s::timestamptz, state FROM errands.jobs WHERE id = %s", [when, later]
    ).fetchone()
    assert row == (True, "scheduled")
    # What a browser's datetime-local input sends: no zone; the pages show UTC.
    response = client.submit(
        f"/jobs/{later}", f"/jobs/{later}/reschedule", "reschedule", run_at="2032-05-06T07:08"
    )
    assert flash(client, response)
    row = conn.execute(
        "SELECT run_at = '2032-05-06 07:08:00+00'::timestamptz FROM errands.jobs WHERE id = %s",
        [later],
    ).fetchone()
    assert row == (True,)


def test_bulk_action_by_filter_counts_then_acts_on_exactly_those(
    client: Client, conn: psycopg.Connection[Any]
) -> None:
    tag = "bulk-http"
    targets = [add(conn, "webhooks.deliver", {"n": n}, queue_name=tag) for n in range(4)]
    spared = add(conn, "send_email", {"n": 9}, queue_name=tag)
    fields = {"queue": tag, "task": "webhooks.deliver", "action": "cancel"}
    jobs_page = client.get(
        "/jobs?" + urllib.parse.urlencode({"queue": tag, "task": fields["task"]})
    )
    bulk = jobs_page.page.form("/jobs/bulk", "cancel")
    assert bulk.method == "post"
    assert bulk.fields.get("queue") == tag and bulk.fields.get("task") == fields["task"], bulk
    before = snapshot(conn)
    confirm = client.post("/jobs/bulk", {**bulk.fields, "action": "cancel"})
    assert confirm.status == 200, confirm.text[:2000]
    assert confirm.page.by_id("bulk-count").text.strip() == "4"
    assert snapshot(conn) == before  # nothing done before the confirmation
    (form,) = [f for f in confirm.page.forms if f.fields.get("confirm") == "yes"]
    assert urllib.parse.urlsplit(form.action).path == "/jobs/bulk", form
    done = client.post("/jobs/bulk", {**form.fields, "action": form.fields.get("action", "cancel")})
    assert done.status == 303, done.text[:2000]
    location = urllib.parse.urlsplit(done.headers["Location"])
    assert location.path == "/jobs"
    query = dict(urllib.parse.parse_qsl(location.query))
    assert query.get("queue") == tag and query.get("task") == "webhooks.deliver", query
    assert [state(conn, j) for j in targets] == ["cancelled"] * 4
    assert state(conn, spared) == "pending"


@pytest.mark.parametrize("action", ["retry", "remove", "reschedule"])
def test_every_bulk_action_touches_exactly_the_filtered_jobs(
    client: Client, conn: psycopg.Connection[Any], action: str
) -> None:
    tag = f"bulk-{action}"
    targets = [
        add(conn, "reports.build", {"n": n}, queue_name=tag, max_attempts=1) for n in range(3)
    ]
    for job in targets:
        fail(conn, job, "boom")
    spared = add(conn, "reports.build", {"n": 9}, queue_name=tag)  # pending, not failed
    query = {"queue": tag, "state": "failed"}
    jobs_page = client.get("/jobs?" + urllib.parse.urlencode(query)).page
    fields = {**jobs_page.form("/jobs/bulk", action).fields, "action": action}
    if action == "reschedule":
        fields["run_at"] = "2033-03-03T03:03:03+00:00"
    before = snapshot(conn)
    confirm = client.post("/jobs/bulk", fields)
    assert confirm.status == 200, confirm.text[:2000]
    assert confirm.page.by_id("bulk-count").text.strip() == "3"
    assert snapshot(conn) == before
    (form,) = [f for f in confirm.page.forms if f.fields.get("confirm") == "yes"]
    done = client.post("/jobs/bulk", {**form.fields, "action": form.fields.get("action", action)})
    assert done.status == 303, done.text[:2000]
    expected = {"retry": "pending", "remove": None, "reschedule": "failed"}[action]
    assert [state(conn, j) for j in targets] == [expected] * 3
    if action == "reschedule":
        rows = conn.execute(
            "SELECT bool_and(run_at = '2033-03-03 03:03:03+00') FROM errands.jobs"
            " WHERE id = ANY(%s)",
            [targets],
        ).fetchone()
        assert rows == (True,)
    assert state(conn, spared) == "pending"


def test_queue_and_task_controls_call_the_flow_control_api(
    client: Client, conn: psycopg.Connection[Any]
) -> None:
    add(conn, "send_email", {}, queue_name="controls")
    assert flash(client, client.submit("/queues", "/queues/controls/pause"))
    paused = conn.execute("SELECT paused FROM errands.queues WHERE queue_name = 'controls'")
    assert paused.fetchone() == (True,)
    assert flash(client, client.submit("/queues", "/queues/controls/resume"))
    paused = conn.execute("SELECT paused FROM errands.queues WHERE queue_name = 'controls'")
    assert paused.fetchone() == (False,)
    response = client.submit(
        "/queues", "/queues/controls/limits", concurrency="3", rate_limit="", rate_period=""
    )
    assert flash(client, response)
    row = conn.execute(
        "SELECT concurrency, rate_limit, rate_period FROM errands.limits"
        " WHERE kind = 'queue' AND name = 'controls'"
    ).fetchone()
    assert row == (3, None, None)
    assert flash(client, client.submit("/queues", "/tasks/send_email/pause"))
    assert conn.execute(
        "SELECT paused FROM errands.limits WHERE kind = 'task' AND name = 'send_email'"
    ).fetchone() == (True,)
    assert flash(client, client.submit("/queues", "/tasks/send_email/resume"))
    assert conn.execute(
        "SELECT count(*) FROM errands.task_limits WHERE task_identifier = 'send_email' AND paused"
    ).fetchone() == (0,)
    # Bad limits: a clear answer naming the value, nothing changed.
    before = snapshot(conn)
    form = client.get("/queues").page.form("/queues/controls/limits")
    response = client.post("/queues/controls/limits", {**form.fields, "concurrency": "-5"})
    assert response.status in (303, 400), response.status
    assert response.status != 400 or "-5" in response.text
    assert snapshot(conn) == before


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


MOUNTED_APP = """
import os

from fastapi import FastAPI

from errands.dashboard import create_app

app = FastAPI()
app.mount("/errands", create_app(os.environ["DATABASE_URL"]))


@app.get("/")
def home() -> dict[str, str]:
    return {"app": "mine"}
"""


def test_mounted_in_a_fastapi_app_every_link_and_form_stays_under_its_prefix(
    dsn: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    (tmp_path / "mounted_app.py").write_text(MOUNTED_APP)
    job = add(conn, "send_email", {"to": "ada@example.com"}, queue_name="mounted")
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "mounted_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = {"DATABASE_URL": dsn}
    with serve(
        argv, port=port, log=tmp_path / "uvicorn.log", env=env, cwd=tmp_path, unset=UNSET
    ) as srv:
        client = Client(srv.url)
        assert json.loads(client.get("/").text) == {"app": "mine"}
        for path in [*PAGES, f"/jobs/{job}"]:
            response = client.get("/errands" + path + "?refresh=0")
            assert response.status == 200, (path, response.text[:2000])
            for element in response.page.elements:
                for attr in ("href", "src", "action"):
                    value = element.attrs.get(attr, "")
                    if value.startswith("/"):
                        assert value.startswith("/errands/"), (path, element)
        response = client.submit(f"/errands/jobs/{job}", f"/errands/jobs/{job}/cancel", "cancel")
        assert response.status == 303, response.text[:2000]
        location = urllib.parse.urlsplit(response.headers["Location"]).path
        assert location.startswith("/errands/"), location
        assert state(conn, job) == "cancelled"

"""The dashboard's pages and actions over plain HTTP against a real server
(``errands dashboard`` in its own process, on a free port of 127.0.0.1): every page
with its Server-Timing, filters and keyset pages, each action and bulk action as one
SQL call, queue and task controls, and the app mounted in a FastAPI application.
The safety rules are in test_dashboard_http.py, the browser in
test_dashboard_browser.py.

One database and one server per module; each test makes the jobs it changes, so the
tests do not depend on their order."""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dashboard_data import add, fail, snapshot, state
from dashboard_fixtures import (
    database_fixtures,
    logs_fixture,
    require_dashboard_extra,
    server_fixtures,
)
from dashboard_support import PAGES, UNSET, Client, flash
from server_support import free_port, serve

require_dashboard_extra()

pytestmark = pytest.mark.slow

SERVER_TIMING = re.compile(r"\bapp;dur=\d+(\.\d+)?\b")


# --- fixtures --------------------------------------------------------------------


dsn, conn = database_fixtures("dash_pages", retention="1 hour")
logs = logs_fixture("dash_pages")
server, client = server_fixtures()


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
        assert SERVER_TIMING.search(css.headers.get("Server-Timing", "")), href
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
        assert SERVER_TIMING.search(response.headers.get("Server-Timing", "")), path
    assert client.get("/jobs/not-a-number").status in (400, 404)


def test_a_job_page_shows_every_failed_try_and_its_timeline(
    client: Client, conn: psycopg.Connection[Any]
) -> None:
    """Each failure recorded by the worker API (worker_fail_jobs, as a worker
    reports it) is on the page, oldest try last in the list, with its worker, and
    the timeline has each try's start and failure; still there once it completed."""
    job = add(conn, "tries.page", {"n": 1}, max_attempts=5)
    for worker_id, message in (("w-alpha", "smtp <timeout> #1"), ("w-beta", "disk full #2")):
        conn.execute("UPDATE errands._jobs SET run_at = now() WHERE id = %s", [job])
        taken = conn.execute("SELECT id FROM errands.get_jobs(%s, ARRAY['tries.page'])",
                             [worker_id]).fetchall()
        assert [r[0] for r in taken] == [job]
        conn.execute("SELECT errands.worker_fail_jobs(%s, %s, %s)", [worker_id, [job], [message]])
    for finished in (False, True):
        page = client.get(f"/jobs/{job}").page
        tries = page.find("li", "try-error")
        assert [t.attrs.get("data-attempt") for t in tries] == ["2", "1"]
        assert "w-beta" in tries[0].text and "disk full #2" in tries[0].text
        assert "w-alpha" in tries[1].text and "smtp <timeout> #1" in tries[1].text
        timeline = page.by_id("timeline").text
        for expected in ("try 1 started by worker w-alpha", "try 1 failed",
                         "try 2 started by worker w-beta", "try 2 failed"):
            assert expected in timeline, (expected, timeline)
        if not finished:
            conn.execute("UPDATE errands._jobs SET run_at = now() WHERE id = %s", [job])
            conn.execute("SELECT errands.get_jobs('w-gamma', ARRAY['tries.page'])")
            conn.execute("SELECT errands.worker_complete_jobs('w-gamma', %s, NULL)", [[job]])
            assert state(conn, job) == "completed"
    assert "try 3 started" in timeline and "completed" in timeline


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
    # The history is a filter away, and the finished job keeps its page.
    assert doomed in client.get("/jobs?state=cancelled&queue=actions").page.job_ids()
    finished = client.get(f"/jobs/{doomed}").page
    assert finished.find("span", "state-cancelled")

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

"""The dashboard application served by a real `errands dashboard` (uvicorn) against
a real database: safety (bind refusal, credentials, CSRF, read-only, escaping) and
that each page and action does what a user sees. The browser tests are in
test_dashboard_browser.py (branch s4-dashtest)."""

from __future__ import annotations

import base64
import http.cookiejar
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests_py.server_support import free_port, serve

pytest.importorskip("starlette")
pytest.importorskip("jinja2")

ERRANDS = [sys.executable, "-m", "errands.cli"]


class Client:
    """A cookie-keeping HTTP client that does not follow redirects."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.headers = headers or {}

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.base + path, data=data,
                                     headers={**self.headers, **(headers or {})})
        try:
            with self.opener.open(req, timeout=30) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read().decode()

    def csrf(self) -> str:
        return next(c.value for c in self.jar if c.name == "errands_csrf")


@pytest.fixture
def dashboard(db: str, tmp_path: Path) -> Iterator[Client]:
    port = free_port()
    with serve([*ERRANDS, "dashboard", "--port", str(port), "-c", db], port=port,
               log=tmp_path / "dashboard.log"):
        yield Client(f"http://127.0.0.1:{port}")


def test_non_loopback_without_credentials_is_refused(db: str) -> None:
    env = {k: v for k, v in __import__("os").environ.items()
           if not k.startswith("ERRANDS_DASHBOARD")}
    proc = subprocess.run([*ERRANDS, "dashboard", "--host", "0.0.0.0", "--port", "0", "-c", db],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert "0.0.0.0" in proc.stderr and "credentials" in proc.stderr


def test_every_page_answers_with_server_timing(
    dashboard: Client, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("SELECT errands.add_job('t', '{\"a\": 1}')")
    for path in ("/", "/jobs", "/jobs?state=completed", "/queues", "/workers", "/cron", "/flows",
                 "/static/style.css", "/static/app.js"):
        status, headers, _ = dashboard.request(path)
        assert status == 200, path
        assert re.fullmatch(r"app;dur=[0-9.]+", headers["server-timing"]), path
        assert "script-src 'self'" in headers["content-security-policy"], path


def test_hostile_payload_and_error_are_text(
    dashboard: Client, conn: psycopg.Connection[Any]
) -> None:
    job_id = conn.execute(
        "SELECT id FROM errands.add_job('x<script>', '{\"h\": \"<script>alert(1)</script>\"}')"
    ).fetchone()[0]  # type: ignore[index]
    nested = "[" * 3000 + "]" * 3000
    deep_id = conn.execute(
        "SELECT id FROM errands.add_job('deep', %s::json)", [nested]
    ).fetchone()[0]  # type: ignore[index]
    for path in ("/jobs", f"/jobs/{job_id}", "/"):
        _, _, html = dashboard.request(path)
        assert "<script>alert" not in html and "x<script>" not in html
    _, _, html = dashboard.request(f"/jobs/{job_id}")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    status, _, html = dashboard.request(f"/jobs/{deep_id}")
    assert status == 200 and '<pre id="payload">[[[' in html


def test_post_needs_the_csrf_token(
    dashboard: Client, conn: psycopg.Connection[Any]
) -> None:
    job_id = conn.execute("SELECT id FROM errands.add_job('t', '{}')").fetchone()[0]  # type: ignore[index]
    dashboard.request("/jobs")  # sets the cookie
    status, _, _ = dashboard.request(f"/jobs/{job_id}/remove", {"csrf_token": "wrong"})
    assert status == 403
    status, _, _ = dashboard.request(f"/jobs/{job_id}/remove", {})
    assert status == 403
    assert conn.execute("SELECT count(*) FROM errands.jobs").fetchone() == (1,)
    status, headers, _ = dashboard.request(f"/jobs/{job_id}/remove",
                                           {"csrf_token": dashboard.csrf()})
    assert status == 303 and headers["location"].endswith("/jobs")
    assert conn.execute("SELECT count(*) FROM errands.jobs").fetchone() == (0,)
    _, _, html = dashboard.request("/jobs")
    assert re.search(r'<div id="flash"[^>]*>removed 1 of job', html)


def test_bulk_retry_confirms_with_the_count(
    dashboard: Client, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("SELECT errands.add_job('bulk', json_build_object('i', i), max_attempts => 1) "
                 "FROM generate_series(1, 3) i")
    conn.execute("SELECT errands.add_job('other', '{}')")
    conn.execute("SELECT errands.worker_fail_jobs('w', ARRAY(SELECT id FROM errands.get_jobs("
                 "'w', ARRAY['bulk'], 10)), ARRAY['boom', 'boom', 'boom'])")
    dashboard.request("/jobs")
    form = {"csrf_token": dashboard.csrf(), "action": "retry", "state": "failed", "task": "bulk"}
    status, _, html = dashboard.request("/jobs/bulk", form)
    assert status == 200 and '<span id="bulk-count">3</span>' in html
    failed = "SELECT count(*) FROM errands.jobs WHERE state = 'failed'"
    assert conn.execute(failed).fetchone() == (3,)
    status, headers, _ = dashboard.request("/jobs/bulk", {**form, "confirm": "yes"})
    assert status == 303 and "state=failed" in headers["location"]
    assert conn.execute("SELECT state, count(*) FROM errands.jobs GROUP BY 1").fetchall() == [
        ("pending", 4)]


def test_jobs_keyset_pages_cover_every_job_once(
    dashboard: Client, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("SELECT errands.add_job('page', json_build_object('i', i), "
                 "run_at => now() - i * interval '1 minute') FROM generate_series(1, 25) i")
    for sort in ("-id", "run_at", "-attempts"):
        seen: list[int] = []
        path = f"/jobs?limit=10&sort={sort}"
        while path:
            _, _, html = dashboard.request(path)
            seen += [int(x) for x in re.findall(r'data-job-id="(\d+)"', html)]
            nxt = re.search(r'id="next-page" href="([^"]+)"', html)
            path = nxt.group(1).replace("&amp;", "&") if nxt else ""
        assert sorted(seen) == sorted(set(seen)) and len(seen) == 25, sort


def test_credentials_and_read_only(db: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"ERRANDS_DASHBOARD_TOKEN": "s3cret", "ERRANDS_DASHBOARD_USERS": "alice:pw1"}
    with serve([*ERRANDS, "dashboard", "--port", str(port), "--read-only", "-c", db], port=port,
               log=tmp_path / "d.log", env=env):
        base = f"http://127.0.0.1:{port}"
        anon = Client(base)
        assert anon.request("/")[0] == 401
        assert anon.request("/static/style.css")[0] == 401
        assert Client(base, {"Authorization": "Bearer s3cret"}).request("/")[0] == 200
        assert Client(base, {"Authorization": "Bearer nope"}).request("/")[0] == 401
        basic = base64.b64encode(b"alice:pw1").decode()
        assert Client(base, {"Authorization": f"Basic {basic}"}).request("/")[0] == 200
        browser = Client(base)
        assert browser.request("/?token=s3cret")[0] == 200
        status, _, html = browser.request("/jobs")  # the cookie carries the token now
        assert status == 200 and 'value="retry"' not in html  # read-only: no action forms
        status, _, _ = browser.request("/jobs/1/retry", {"csrf_token": browser.csrf()})
        assert status == 403


def test_a_grant_dashboard_role_loads_every_page_and_acts_only_when_allowed(
    db: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    conn.execute("CREATE ROLE dash_ro LOGIN PASSWORD 'ro'")
    conn.execute("CREATE ROLE dash_rw LOGIN PASSWORD 'rw'")
    conn.execute("SELECT errands.grant_dashboard('dash_ro')")
    conn.execute("SELECT errands.grant_dashboard('dash_rw', read_only => false)")
    conn.execute("SELECT errands.add_job('t', '{}', queue_name => 'q1')")
    conn.execute("SELECT errands.set_crontab('0 4 * * * nightly')")
    conn.execute("""SELECT errands.add_flow('{"steps": [{"name": "a", "task": "t"},
                    {"name": "b", "task": "t", "depends_on": ["a"]}]}')""")
    job_id = conn.execute("SELECT min(id) FROM errands.jobs").fetchone()[0]  # type: ignore[index]
    flow_id = conn.execute("SELECT max(flow_id) FROM errands.flow_steps").fetchone()[0]  # type: ignore[index]
    info = psycopg.conninfo.conninfo_to_dict(db)
    for role in ("dash_ro", "dash_rw"):
        dsn = psycopg.conninfo.make_conninfo(db, user=role, password=role[-2:])
        assert info.get("dbname")
        port = free_port()
        with serve([*ERRANDS, "dashboard", "--port", str(port), "-c", dsn], port=port,
                   log=tmp_path / f"{role}.log"):
            client = Client(f"http://127.0.0.1:{port}")
            for path in ("/", "/jobs", "/jobs?state=completed", f"/jobs/{job_id}", "/queues",
                         "/workers", "/cron", "/flows", f"/flows/{flow_id}"):
                assert client.request(path)[0] == 200, (role, path)
            status, _, _ = client.request("/queues/q1/pause", {"csrf_token": client.csrf()})
            assert status == 303
            _, _, html = client.request("/queues")
            paused = conn.execute(
                "SELECT paused FROM errands.queues WHERE queue_name = 'q1'").fetchone()
            if role == "dash_ro":
                assert "permission denied" in html and paused == (False,)
            else:
                assert paused == (True,)


@pytest.fixture
def big_table_dashboard(db: str) -> Iterator[Client]:
    """create_app under a real uvicorn in a thread, treating every table as big
    (exact_count_below=1): counts are estimated, filtered lists searched in windows."""
    import threading

    import uvicorn

    from errands.dashboard import DashboardOptions, create_app

    port = free_port()
    app = create_app(db, DashboardOptions(exact_count_below=1))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        import time

        while not server.started:
            time.sleep(0.05)
        yield Client(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(30)


def test_a_big_table_is_searched_in_windows_without_gaps(
    big_table_dashboard: Client, conn: psycopg.Connection[Any]
) -> None:
    from errands.dashboard.pages_jobs import WINDOW

    # Matches far apart in id order: one near the top, one a window and a half below.
    conn.execute("SELECT errands.add_job('rare', '{}')")
    conn.execute("SELECT setval(pg_get_serial_sequence('errands._jobs', 'id'), %s)",
                 [int(WINDOW * 1.5)])
    conn.execute("SELECT errands.add_job('common', json_build_object('i', i)) "
                 "FROM generate_series(1, 30) i")
    conn.execute("SELECT errands.add_job('rare', '{}')")
    conn.execute("ANALYZE errands._jobs")
    found: list[int] = []
    path = "/jobs?task=rare"
    pages = 0
    while path:
        status, _, html = big_table_dashboard.request(path)
        assert status == 200
        pages += 1
        found += [int(x) for x in re.findall(r'data-job-id="(\d+)"', html)]
        nxt = re.search(r'id="next-page" href="([^"]+)"', html)
        path = nxt.group(1).replace("&amp;", "&") if nxt else ""
    expected = [r[0] for r in conn.execute(
        "SELECT id FROM errands.jobs WHERE task_identifier = 'rare' ORDER BY id DESC")]
    assert found == expected
    assert pages == 2  # the newest window held one; the next page searched on
    _, _, html = big_table_dashboard.request("/?refresh=0")
    assert "≈" in html  # estimated counts


def test_a_big_table_counts_rare_states_exactly(
    big_table_dashboard: Client, conn: psycopg.Connection[Any]
) -> None:
    """Counted as a big table: running, waiting and failed jobs are exact (the
    partial index jobs_unavailable), the big buckets estimated (marked ≈)."""
    conn.execute("SELECT errands.add_job('bulk', json_build_object('i', i)) "
                 "FROM generate_series(1, 3000) i")
    conn.execute("SELECT errands.add_job('rare_run', json_build_object('i', i)) "
                 "FROM generate_series(1, 3) i")
    running = [r[0] for r in conn.execute("SELECT id FROM errands.get_jobs('w-big', "
                                          "ARRAY['rare_run'], 10)")]
    conn.execute("SELECT errands.add_job('rare_fail', '{}', max_attempts => 1) "
                 "FROM generate_series(1, 2)")
    conn.execute("SELECT errands.worker_fail_jobs('w-big', ids, array_fill('x'::text, "
                 "ARRAY[cardinality(ids)])) FROM (SELECT ARRAY(SELECT id FROM "
                 "errands.get_jobs('w-big', ARRAY['rare_fail'], 10)) AS ids) s")
    conn.execute("ANALYZE errands._jobs")
    _, _, html = big_table_dashboard.request("/?refresh=0")

    def card(state: str) -> str:
        found = re.search(rf'id="count-{state}".*?<strong>([^<]*)</strong>', html, re.S)
        assert found is not None, state
        return found.group(1)

    expected: dict[str, int] = dict(conn.execute(
        "SELECT state, count(*) FROM errands.jobs GROUP BY 1").fetchall())
    assert card("running") == f"{expected['running']:,}" and expected["running"] == 3
    assert card("failed") == f"{expected['failed']:,}"
    assert card("pending").startswith("≈")
    status, _, html = big_table_dashboard.request("/jobs?state=running")
    assert status == 200
    found = [int(x) for x in re.findall(r'data-job-id="(\d+)"', html)]
    assert sorted(found) == sorted(running) and 'id="next-page"' not in html


def test_charts_come_from_history_and_say_when_none_is_kept(
    dashboard: Client, conn: psycopg.Connection[Any]
) -> None:
    _, _, html = dashboard.request("/?refresh=0")
    assert 'id="no-history"' in html and 'data-refresh="0"' in html
    conn.execute("SELECT errands.set_retention('1 hour')")
    conn.execute("SELECT errands.add_job('c', json_build_object('i', i)) "
                 "FROM generate_series(1, 4) i")
    conn.execute("SELECT errands.worker_complete_jobs('w', ARRAY(SELECT id FROM "
                 "errands.get_jobs('w', ARRAY['c'], 10)))")
    _, _, html = dashboard.request("/")
    assert 'id="no-history"' not in html and 'data-refresh="5"' in html
    chart = re.search(r'<svg class="chart" id="chart-throughput".*?</svg>', html, re.S)
    assert chart is not None
    assert sum(float(v) for v in re.findall(r'data-value="([0-9.]+)"', chart.group(0))) == 4
    # Queue wait (run_at -> start) and run time (start -> completion) of a job due
    # 10 s ago, taken 4 s ago (as the worker API records them).
    conn.execute("SELECT errands.add_job('d', '{}')")
    conn.execute("SELECT errands.get_jobs('w', ARRAY['d'], 1)")
    conn.execute("UPDATE errands._jobs SET run_at = now() - interval '10 s',"
                 " locked_at = now() - interval '4 s' WHERE locked_by = 'w'")
    conn.execute("SELECT errands.worker_complete_jobs('w', ARRAY(SELECT id FROM errands._jobs"
                 " WHERE locked_by = 'w'))")
    _, _, html = dashboard.request("/?refresh=0")
    for chart_id, what, low, high in (("chart-wait", "queue wait", 6.0, 6.0),
                                      ("chart-run", "run time", 4.0, 4.5)):
        chart = re.search(rf'<svg class="chart" id="{chart_id}".*?</svg>', html, re.S)
        assert chart is not None, chart_id
        # The bucket of the five completions: its maximum is the delayed job's.
        maxima = [float(m) for m in re.findall(
            rf"median {what} [0-9.]+ s \(max ([0-9.]+) s\) of 5 completed jobs", chart.group(0))]
        assert len(maxima) == 1 and low <= maxima[0] <= high, (chart_id, maxima)


def test_queue_limits_cron_run_now_and_reschedule(
    dashboard: Client, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("SELECT errands.add_job('t', '{}', queue_name => 'tenant:1')")
    conn.execute("SELECT errands.set_crontab('0 4 * * * nightly ?id=n1')")
    job_id = conn.execute("SELECT id FROM errands.add_job('later', '{}')").fetchone()[0]  # type: ignore[index]
    _, _, html = dashboard.request("/queues")
    assert 'data-queue="tenant:1"' in html
    csrf = dashboard.csrf()
    status, _, _ = dashboard.request("/queues/tenant:1/limits", {
        "csrf_token": csrf, "concurrency": "3", "rate_limit": "10", "rate_period": "1 minute"})
    assert status == 303
    assert conn.execute("SELECT concurrency, rate_limit, rate_period::text FROM errands.queues "
                        "WHERE queue_name = 'tenant:1'").fetchone() == (3, 10, "00:01:00")
    status, _, _ = dashboard.request("/queues/tenant:1/limits", {
        "csrf_token": csrf, "concurrency": "0", "rate_limit": "", "rate_period": ""})
    _, _, html = dashboard.request("/queues")
    assert status == 303 and re.search(r'<div id="flash"[^>]*>queue tenant:1: errands: ', html)
    dashboard.request("/tasks/t/pause", {"csrf_token": csrf})
    assert conn.execute("SELECT paused FROM errands.task_limits "
                        "WHERE task_identifier = 't'").fetchone() == (True,)
    assert dashboard.request("/cron/n1/run", {"csrf_token": csrf})[0] == 303
    assert conn.execute("SELECT count(*) FROM errands.jobs WHERE task_identifier = 'nightly' "
                        "AND run_at <= now()").fetchone() == (1,)
    status, _, _ = dashboard.request(f"/jobs/{job_id}/reschedule", {
        "csrf_token": csrf, "run_at": "2031-05-04T03:02"})
    assert status == 303
    assert conn.execute("SELECT run_at = '2031-05-04 03:02:00+00' FROM errands.jobs "
                        "WHERE id = %s", [job_id]).fetchone() == (True,)

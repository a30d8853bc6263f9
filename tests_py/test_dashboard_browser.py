"""The dashboard in a real browser: Debian's chromium, headless, driven by selenium
against a real server (``errands dashboard``) and a real worker (``errands worker``,
tasks of dashboard_tasks.py), one of each plus one browser for the module.

It loads every page, applies the filters of /jobs, cancels a running job from the UI
and sees the worker stop it, retries a failed job and sees it complete, pauses a
queue and sees nothing of it start (while later jobs of another queue run), resumes
it and sees the job run, runs a bulk action by filter through its confirmation, and
shows a hostile payload as text.  Screenshots go to $ERRANDS_SCREENSHOTS (default: a
temporary directory); with ERRANDS_UPDATE_SCREENSHOTS=1 the README's
docs/img/dashboard-*.png are written too."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dashboard_data import HOSTILE, add, seed, state
from dashboard_fixtures import database_fixtures, logs_fixture
from dashboard_support import PAGES, dashboard, worker
from server_support import Server
from worker_support import wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        f"{CHROMIUM} or {CHROMEDRIVER} is missing: apt-get install chromium chromium-driver "
        "(`make test` does when run as root)",
        allow_module_level=True,
    )
for _module in ("selenium", "starlette", "jinja2", "uvicorn", "multipart"):
    pytest.importorskip(_module, reason=f"{_module} is not installed: pip install -e '.[test]'")

from dashboard_ui import UI, start_browser  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

pytestmark = pytest.mark.slow


# --- fixtures --------------------------------------------------------------------


dsn, conn = database_fixtures("dash_browser")
logs = logs_fixture("dash_browser")


@pytest.fixture(scope="module")
def seeded(dsn: str, logs: Path) -> Iterator[dict[str, int]]:
    """The seeded database with its worker running; waits until the worker has done
    what it can of the seed (only the long report runs; retries wait for their turn)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = seed(conn)
        # Two workers, as a small deployment would run.
        with worker(dsn, logs / "worker.log") as proc, worker(dsn, logs / "worker2.log"):

            def settled() -> bool:
                # Left: the long report running, the exports paused, three failures
                # (the bounce, the CRM webhook and the flow's CRM step), the retrying
                # revenue report, the reminders and the flow's waiting report.
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE state = 'pending'"
                    "                        AND queue_name IS DISTINCT FROM 'exports'),"
                    "       count(*) FILTER (WHERE state = 'running'),"
                    "       count(*) FILTER (WHERE state = 'failed'),"
                    "       (SELECT count(*) FROM errands.workers WHERE state = 'alive')"
                    " FROM errands.jobs"
                ).fetchone()
                return row == (0, 1, 3, 2) and state(conn, ids["running"]) == "running"

            wait_until(settled, 60, "the worker to run the seeded jobs")
            yield {**ids, "worker_pid": proc.pid}
            # Stop the long report, so the worker stops at once.
            conn.execute(
                "SELECT errands.cancel_jobs(array(SELECT id FROM errands.jobs"
                " WHERE state = 'running'))"
            )


@pytest.fixture(scope="module")
def server(dsn: str, logs: Path, seeded: dict[str, int]) -> Iterator[Server]:
    with dashboard(dsn, logs / "dashboard.log") as value:
        yield value


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("ERRANDS_SCREENSHOTS")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    profile = Path(tempfile.mkdtemp(prefix="errands-chromium-"))
    driver = start_browser(profile)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def ui(browser: WebDriver, server: Server, screenshots: Path) -> UI:
    return UI(browser, server, screenshots)


# --- the tests -------------------------------------------------------------------


def test_every_page_loads_without_errors_and_is_screenshotted(
    ui: UI, seeded: dict[str, int], conn: psycopg.Connection[Any]
) -> None:
    pages = [
        ("/", "page-overview", "overview"),
        ("/jobs", "page-jobs", "jobs"),
        (f"/jobs/{seeded['bounced']}", "page-job", "job"),
        ("/queues", "page-queues", "queues"),
        ("/workers", "page-workers", "workers"),
        ("/cron", "page-cron", "cron"),
        ("/flows", "page-flows", "flows"),
        (f"/flows/{seeded['flow']}", "page-flow", "flow"),
    ]
    assert {path for path, _, _ in pages} >= set(PAGES)
    ui.console_errors()  # drop what came before
    for path, main, name in pages:
        ui.open(path, main)
        assert ui.shoot(name).stat().st_size > 10_000, name
        assert ui.console_errors() == [], path
    # What the pages show comes from the database.
    ui.open("/", "page-overview")
    for chart in ("chart-throughput", "chart-failures", "chart-wait"):
        assert ui.one(f"svg.chart#{chart}").is_displayed(), chart
    ui.open(f"/jobs/{seeded['bounced']}", "page-job")
    assert "mailbox unavailable" in ui.one("ol#errors").text
    assert json.loads(ui.one("pre#payload").text)["to"] == "nobody@example.org"
    assert ui.css("ol#timeline li"), "the job page shows no timeline"
    ui.open("/queues", "page-queues")
    queues = {e.get_attribute("data-queue") for e in ui.css("tr.queue-row")}
    assert {"emails", "media", "webhooks", "reports", "exports"} <= queues, queues
    ui.open("/workers", "page-workers")
    shown = {e.get_attribute("data-worker-id") for e in ui.css("tr.worker-row")}
    alive = {r[0] for r in conn.execute("SELECT id FROM errands.workers").fetchall()}
    assert len(shown) == 2 and shown == alive, (shown, alive)
    ui.open("/cron", "page-cron")
    items = {e.get_attribute("data-identifier") for e in ui.css("tr.cron-row")}
    assert items == {"nightly_revenue", "weekly_digest", "hourly_sync"}, items
    ui.open(f"/flows/{seeded['flow']}", "page-flow")
    steps = {
        int(e.get_attribute("data-job-id") or 0): e.get_attribute("class") or ""
        for e in ui.css("svg#flow-graph g.step")
    }
    expected = dict(
        conn.execute(
            "SELECT job_id, state FROM errands.flow_steps WHERE flow_id = %s", [seeded["flow"]]
        ).fetchall()
    )
    assert set(steps) == set(expected)
    for job_id, classes in steps.items():
        assert f"state-{expected[job_id]}" in classes.split(), (job_id, classes, expected)
    # A flow step's job page draws its flow.
    ui.open(f"/jobs/{seeded['flow_step']}", "page-job")
    assert ui.css("svg#flow-graph g.step")


def test_filters_on_the_jobs_page(
    ui: UI, seeded: dict[str, int], conn: psycopg.Connection[Any]
) -> None:
    ui.open("/jobs", "page-jobs")
    form = next(
        f
        for f in ui.css("form")
        if (f.get_attribute("method") or "get").lower() == "get"
        and f.find_elements(By.NAME, "task")
    )
    for name, value in (("task", "send_email"), ("state", "failed")):
        field = form.find_element(By.NAME, name)
        if field.tag_name == "select":
            Select(field).select_by_value(value)
        else:
            field.clear()
            field.send_keys(value)
    ui.click(form.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]"))
    wait_until(lambda: ui.path()[1].get("task") == "send_email", 15, "the filtered page")
    ui.main("page-jobs")
    assert ui.path()[1].get("state") == "failed"
    expected = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM errands.jobs WHERE task_identifier = 'send_email' AND state = 'failed'"
        ).fetchall()
    ]
    assert expected and sorted(ui.job_ids()) == sorted(expected)
    badges = ui.css("tr.job-row span.state")
    assert badges and all("state-failed" in (b.get_attribute("class") or "") for b in badges)


def test_cancel_a_running_job_from_the_ui_and_the_worker_stops_it(
    ui: UI, seeded: dict[str, int], conn: psycopg.Connection[Any]
) -> None:
    job = add(
        conn, "reports.build", {"report": "cancel-me", "seconds": 600}, queue_name="cancel-ui"
    )
    wait_until(lambda: state(conn, job) == "running", 15, "the job to start")
    ui.open(f"/jobs/{job}", "page-job")
    ui.click(ui.one("button[name=action][value=cancel]"))
    assert ui.flash()
    # Only the worker's report ends a running job: it stopped the 600 s sleep.
    wait_until(lambda: state(conn, job) == "cancelled", 20, "the worker to stop the job")
    ui.open(f"/jobs/{job}", "page-job")
    assert ui.css("span.state.state-cancelled")


def test_retry_a_failed_job_from_the_ui_and_it_runs(
    ui: UI, seeded: dict[str, int], conn: psycopg.Connection[Any]
) -> None:
    job = add(
        conn,
        "send_email",
        {"to": "ada@example.com", "fail_unless": "smtp-fixed"},
        queue_name="retry-ui",
        max_attempts=1,
    )
    wait_until(lambda: state(conn, job) == "failed", 15, "the job to fail")
    conn.execute("INSERT INTO dash_flags VALUES ('smtp-fixed')")  # the cause is fixed
    ui.open(f"/jobs/{job}", "page-job")
    assert "smtp-fixed" in ui.one("ol#errors").text
    ui.click(ui.one("button[name=action][value=retry]"))
    assert ui.flash()
    wait_until(lambda: state(conn, job) == "completed", 20, "the retried job to complete")
    ui.open(f"/jobs/{job}", "page-job")
    assert ui.css("span.state.state-completed")
    assert json.loads(ui.one("pre#result").text)["attempt"] >= 1


def test_pause_a_queue_from_the_ui_nothing_starts_then_resume_runs_it(
    ui: UI, seeded: dict[str, int], conn: psycopg.Connection[Any]
) -> None:
    first = add(conn, "resize_image", {"image": "first.png"}, queue_name="thumbnails")
    wait_until(lambda: state(conn, first) == "completed", 15, "the queue's first job")
    ui.open("/queues", "page-queues")
    row = ui.one("tr.queue-row[data-queue=thumbnails]")
    ui.click(row.find_element(By.CSS_SELECTOR, "form[action$='/queues/thumbnails/pause'] button"))
    assert ui.flash()
    assert conn.execute(
        "SELECT paused FROM errands.queues WHERE queue_name = 'thumbnails'"
    ).fetchone() == (True,)
    held = add(conn, "resize_image", {"image": "held.png"}, queue_name="thumbnails")
    later = add(conn, "resize_image", {"image": "later.png"}, queue_name="media")
    # The worker took the later job of another queue, not the paused one before it.
    wait_until(lambda: state(conn, later) == "completed", 15, "the other queue's job")
    assert state(conn, held) == "pending"
    ui.open("/queues", "page-queues")
    row = ui.one("tr.queue-row[data-queue=thumbnails]")
    ui.click(row.find_element(By.CSS_SELECTOR, "form[action$='/queues/thumbnails/resume'] button"))
    assert ui.flash()
    wait_until(lambda: state(conn, held) == "completed", 15, "the resumed queue's job")


def test_bulk_cancel_by_filter_shows_the_count_and_acts_after_confirmation(
    ui: UI, seeded: dict[str, int], conn: psycopg.Connection[Any]
) -> None:
    run_at = conn.execute("SELECT now() + interval '1 hour'").fetchone()[0]  # type: ignore[index]
    targets = [
        add(conn, "webhooks.deliver", {"order": n}, queue_name="bulk-ui", run_at=run_at)
        for n in range(5)
    ]
    spared = add(conn, "send_email", {"to": "ada@example.com"}, queue_name="bulk-ui", run_at=run_at)
    ui.open("/jobs?queue=bulk-ui&task=webhooks.deliver", "page-jobs")
    assert sorted(ui.job_ids()) == targets
    ui.click(ui.one("form[action$='/jobs/bulk'] button[name=action][value=cancel]"))
    wait_until(lambda: ui.css("#bulk-count"), 15, "the confirmation page")
    assert ui.one("#bulk-count").text.strip() == "5"
    ui.shoot("bulk-confirm")
    assert [state(conn, j) for j in targets] == ["scheduled"] * 5  # not yet
    confirm = [
        f
        for f in ui.css("form[action$='/jobs/bulk']")
        if f.find_elements(By.CSS_SELECTOR, "input[name=confirm][value=yes]")
    ]
    assert len(confirm) == 1, ui.source()
    ui.click(confirm[0].find_elements(By.CSS_SELECTOR, "button, input[type=submit]")[0])
    assert ui.flash()
    path, query = ui.path()
    assert path == "/jobs" and query.get("queue") == "bulk-ui", ui.driver.current_url
    assert query.get("task") == "webhooks.deliver"
    assert [state(conn, j) for j in targets] == ["cancelled"] * 5
    assert state(conn, spared) == "scheduled"


def test_a_hostile_payload_is_shown_as_text_and_runs_no_script(
    ui: UI, seeded: dict[str, int], conn: psycopg.Connection[Any]
) -> None:
    payload = {
        "html": HOSTILE,
        "img": '<img src=x onerror="window.pwned=2">',
        "attr": '"\' onmouseover="window.pwned=3" x=\'',
    }
    run_at = conn.execute("SELECT now() + interval '1 hour'").fetchone()[0]  # type: ignore[index]
    job = add(
        conn,
        "webhooks.deliver",
        payload,
        queue_name="hostile",
        run_at=run_at,
        max_attempts=1,
        job_key="<b>key</b>",
    )
    conn.execute(
        "SELECT errands.permanently_fail_jobs(%s, %s)",
        [[job], '<svg onload="window.pwned=4"></svg>'],
    )
    for path, main in (
        (f"/jobs/{job}", "page-job"),
        ("/jobs?queue=hostile", "page-jobs"),
        ("/", "page-overview"),
    ):
        ui.open(path, main)
        assert ui.driver.execute_script("return typeof window.pwned") == "undefined", path
        injected = ui.driver.execute_script(
            "return document.querySelectorAll('[onerror],[onload],[onmouseover]').length"
            " + document.querySelectorAll('img[src=x], svg[onload]').length"
            " + Array.from(document.scripts).filter(s => s.text.includes('pwned')).length"
        )
        assert injected == 0, path
    ui.open(f"/jobs/{job}", "page-job")
    assert json.loads(ui.one("pre#payload").text) == payload
    assert "<svg onload=" in ui.one("ol#errors").text


def test_the_overview_refreshes_itself(
    ui: UI, seeded: dict[str, int], conn: psycopg.Connection[Any]
) -> None:
    ui.driver.get(ui.server.url + "/")  # the default: live refresh every 5 s
    ui.main("page-overview")
    assert "live_refresh_probe" not in ui.one("main").text
    run_at = conn.execute("SELECT now() + interval '1 hour'").fetchone()[0]  # type: ignore[index]
    add(conn, "live_refresh_probe", {}, queue_name="live", run_at=run_at)
    script = "var m = document.querySelector('main'); return m ? m.innerText : ''"
    wait_until(
        lambda: "live_refresh_probe" in ui.driver.execute_script(script),
        20,
        "the overview to show the new task",
    )


def test_reschedule_with_the_browsers_date_field(
    ui: UI, seeded: dict[str, int], conn: psycopg.Connection[Any]
) -> None:
    run_at = conn.execute("SELECT now() + interval '1 hour'").fetchone()[0]  # type: ignore[index]
    job = add(conn, "send_email", {"to": "ada@example.com"}, queue_name="later-ui", run_at=run_at)
    ui.open(f"/jobs/{job}", "page-job")
    field = ui.one("form[action$='/reschedule'] input[name=run_at]")
    # What the browser submits is its own format (datetime-local: no zone, read as UTC).
    ui.driver.execute_script("arguments[0].value = '2031-01-02T03:04:05'", field)
    ui.click(ui.one("button[name=action][value=reschedule]"))
    assert ui.flash()
    row = conn.execute(
        "SELECT run_at = '2031-01-02 03:04:05+00'::timestamptz FROM errands.jobs WHERE id = %s",
        [job],
    ).fetchone()
    assert row == (True,)


def test_run_a_cron_item_now_from_the_ui_and_the_worker_runs_it(
    ui: UI, seeded: dict[str, int], conn: psycopg.Connection[Any]
) -> None:
    def digests() -> list[tuple[int, str]]:
        rows = conn.execute(
            "SELECT id, state FROM errands.jobs WHERE payload->>'template' = 'digest'"
            " UNION ALL SELECT id, state FROM errands.finished_jobs"
            " WHERE payload->>'template' = 'digest'"
        ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    assert digests() == []
    ui.open("/cron", "page-cron")
    row = ui.one("tr.cron-row[data-identifier=weekly_digest]")
    ui.click(row.find_element(By.CSS_SELECTOR, "button"))
    assert ui.flash()
    wait_until(lambda: [s for _, s in digests()] == ["completed"], 20, "the digest job to run")

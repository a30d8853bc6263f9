"""The dashboard's GET /metrics, scraped from a real server (``errands dashboard``)
while a real worker (``errands worker``) runs jobs: its gauges equal what SQL counts
at the same moment; it needs the dashboard's credentials like every route; the role
``errands.grant_dashboard`` makes can serve it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dashboard_data import add
from dashboard_fixtures import database_fixtures, require_dashboard_extra
from dashboard_support import Client, dashboard, worker
from psycopg import sql
from worker_support import wait_until

require_dashboard_extra("prometheus_client")

pytestmark = pytest.mark.slow

SAMPLE = re.compile(r'^(errands_db_\w+)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def gauges(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The errands_db_* samples of a Prometheus text body: (name, labels) -> value."""
    found = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = tuple(sorted(LABEL.findall(match.group(2) or "")))
            found[(match.group(1), labels)] = float(match.group(3))
    return found


def sql_jobs(conn: psycopg.Connection[Any]) -> dict[tuple[str, str, str], int]:
    rows = conn.execute(
        "SELECT task_identifier, coalesce(queue_name, ''), state, count(*)"
        " FROM errands.jobs GROUP BY 1, 2, 3"
    ).fetchall()
    return {(t, q, s): int(n) for t, q, s, n in rows}


def scraped_jobs(text: str) -> dict[tuple[str, str, str], int]:
    jobs = {}
    for (name, labels), value in gauges(text).items():
        if name == "errands_db_jobs" and value:
            d = dict(labels)
            jobs[(d["task"], d["queue"], d["state"])] = int(value)
    return jobs


dsn, conn = database_fixtures("dash_metrics")


def test_metrics_during_a_run_equal_the_sql_counts(
    dsn: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # Jobs nobody runs (no worker has the task), one scheduled for later, one queue.
    for n in range(3):
        add(conn, "nightly.cleanup", {"n": n}, queue_name="maintenance")
    add(conn, "send_email", {"to": "later"}, run_at="2999-01-01T00:00:00Z")
    failing = [add(conn, "reports.build", {"fail": "disk full"}, max_attempts=1) for _ in range(2)]
    with worker(dsn, tmp_path / "worker.log", "--jobs", "2"), \
            dashboard(dsn, tmp_path / "dashboard.log") as srv:
        wait_until(
            lambda: conn.execute(
                "SELECT count(*) = 2 FROM errands.jobs WHERE state = 'failed' AND id = ANY(%s)",
                [failing],
            ).fetchone()[0],  # type: ignore[index]
            timeout=30, what="the failing jobs to fail",
        )
        # Then long jobs fill the worker's two slots: "running" while we scrape.
        for n in range(4):
            add(conn, "resize_image", {"seconds": 120, "n": n})
        wait_until(
            lambda: conn.execute(
                "SELECT count(*) >= 2 FROM errands.jobs WHERE state = 'running'"
            ).fetchone()[0],  # type: ignore[index]
            timeout=30, what="two running jobs",
        )
        client = Client(srv.url)
        # Counts that held still across the scrape (the worker may still be
        # buffering a job when we start): read SQL before and after.
        for _ in range(50):
            before = sql_jobs(conn)
            response = client.get("/metrics")
            after = sql_jobs(conn)
            if before == after:
                break
        assert before == after
        assert response.status == 200, response.text[:2000]
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert scraped_jobs(response.text) == before
        assert {s for _, _, s in before} >= {"pending", "scheduled", "failed", "running"}
        figures = gauges(response.text)
        assert figures[("errands_db_jobs_estimated", ())] == 0
        alive = conn.execute("SELECT count(*) FROM errands.workers WHERE state = 'alive'")
        assert figures[("errands_db_workers", (("state", "alive"),))] == alive.fetchone()[0] == 1  # type: ignore[index]
        # The oldest ready job is one of the never-run cleanup jobs (waiting since enqueue).
        oldest = conn.execute(
            "SELECT extract(epoch FROM now() - min(run_at)) FROM errands.jobs"
            " WHERE task_identifier = 'nightly.cleanup'"
        ).fetchone()[0]  # type: ignore[index]
        age = figures[("errands_db_oldest_pending_job_age_seconds", ())]
        assert 0 < age <= float(oldest) + 0.001
        # No job ids or payload values in any label.
        assert "120" not in "".join(str(k[1]) for k in figures)


def test_metrics_needs_the_credentials_and_works_with_the_dashboard_role(
    dsn: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    with dashboard(dsn, tmp_path / "token.log", token="metrics-t0ken") as srv:
        assert Client(srv.url).get("/metrics").status == 401
        ok = Client(srv.url, {"Authorization": "Bearer metrics-t0ken"}).get("/metrics")
        assert ok.status == 200 and "errands_db_jobs_estimated" in ok.text
    name = f"{conn.info.dbname}_metrics_ro"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        conn.execute("SELECT errands.grant_dashboard(%s::regrole)", [name])
        role_dsn = psycopg.conninfo.make_conninfo(dsn, user=name)
        add(conn, "send_email", {"to": "x"}, queue_name="role_q")
        with dashboard(role_dsn, tmp_path / "role.log", read_only=True) as srv:
            response = Client(srv.url).get("/metrics")
            assert response.status == 200, (response.text[:2000], srv.output()[-2000:])
            assert scraped_jobs(response.text) == sql_jobs(conn)
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(name)))

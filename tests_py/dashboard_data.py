"""Data of the dashboard tests (not a test module): jobs made through the public SQL
API, their states, a snapshot of everything an action could change, and the
realistic seed of the browser tests and the README's screenshots."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql

HOSTILE = "<script>window.pwned=1</script>"
ATTR_BREAKER = '"\' onmouseover="window.pwned=2" x=\''


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


def seed(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Realistic work for the pages and the screenshots: the worker runs it for real
    (completions, failures with their errors, retries), plus scheduled jobs, a paused
    queue, a long-running report, a flow and a crontab.  Returns ids worth a look."""
    conn.execute("SELECT errands.set_retention('1 hour')")
    conn.execute("CREATE TABLE dash_flags (name text PRIMARY KEY)")
    people = ["ada", "grace", "alan", "edsger", "barbara", "donald", "margaret", "ken"]
    for n, who in enumerate(people):
        add(
            conn,
            "send_email",
            {"to": f"{who}@example.com", "template": "welcome", "seconds": 0.05 * n},
            queue_name="emails",
        )
    for n in range(6):
        add(
            conn,
            "resize_image",
            {"image": f"uploads/{1000 + n}.jpg", "width": 640},
            queue_name="media",
        )
    for n in range(3):
        add(
            conn,
            "webhooks.deliver",
            {"url": "https://hooks.example.com/orders", "order": 77 + n},
            queue_name="webhooks",
        )
    bounced = add(
        conn,
        "send_email",
        {
            "to": "nobody@example.org",
            "template": "invoice",
            "fail": "SMTP 550 5.1.1 <nobody@example.org>: mailbox unavailable",
        },
        queue_name="emails",
        max_attempts=1,
    )
    add(
        conn,
        "webhooks.deliver",
        {"url": "https://hooks.example.com/crm", "fail": "HTTP 503 from hooks.example.com"},
        queue_name="webhooks",
        max_attempts=1,
    )
    add(
        conn,
        "reports.build",
        {"report": "revenue", "month": "2026-11", "fail": "warehouse query timed out after 30 s"},
        queue_name="reports",
        max_attempts=8,
    )
    running = add(
        conn, "reports.build", {"report": "yearly-summary", "seconds": 3600}, queue_name="reports"
    )
    for n, who in enumerate(people[:3]):
        add(
            conn,
            "send_email",
            {"to": f"{who}@example.com", "template": "reminder"},
            queue_name="emails",
            job_key=f"reminder:{who}",
            run_at=conn.execute("SELECT now() + %s * interval '1 hour'", [n + 2]).fetchone()[0],
        )  # type: ignore[index]
    conn.execute("SELECT errands.pause_queue('exports')")
    for n in range(2):
        add(conn, "reports.build", {"report": "export", "customer": 40 + n}, queue_name="exports")
    flow = {
        "steps": [
            {"name": "avatar", "task": "resize_image", "payload": {"image": "avatars/ada.png"}},
            {
                "name": "welcome",
                "task": "send_email",
                "depends_on": ["avatar"],
                "payload": {"to": "ada@example.com", "template": "welcome"},
            },
            {
                "name": "crm",
                "task": "webhooks.deliver",
                "depends_on": ["avatar"],
                "max_attempts": 1,
                "payload": {"url": "https://crm.example.com", "fail": "HTTP 401 Unauthorized"},
            },
            {
                "name": "report",
                "task": "reports.build",
                "depends_on": ["welcome", "crm"],
                "payload": {"report": "onboarding"},
            },
        ]
    }
    steps = conn.execute(
        "SELECT step, flow_id, job_id FROM errands.add_flow(%s::jsonb)", [json.dumps(flow)]
    ).fetchall()
    conn.execute(
        "SELECT errands.set_crontab(%s)",
        [
            '0 4 * * * reports.build ?id=nightly_revenue {"report": "revenue"}\n'
            '30 8 * * 1 send_email ?id=weekly_digest {"template": "digest"}\n'
            '0 * * * * webhooks.deliver ?id=hourly_sync {"url": "https://crm.example.com"}\n'
        ],
    )
    return {
        "bounced": bounced,
        "running": running,
        "flow": steps[0][1],
        "flow_step": next(job for step, _, job in steps if step == "crm"),
    }

"""GET /queues (named queues and tasks: running, backlog, limits) and their
POST pause/resume/limits, each one call of 35_flow_control.sql's functions."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from errands.dashboard._filters import LIVE_STATES
from errands.dashboard._render import first_line, redirect
from errands.dashboard._security import checked_form

if TYPE_CHECKING:
    from errands.dashboard._app import Dashboard

QUEUE_LIMIT = 500
QUEUES = ("SELECT queue_name, concurrency, rate_limit, rate_period, paused, running, backlog "
          "FROM errands.queues ORDER BY queue_name LIMIT %s")
TASK_LIMITS = ("SELECT task_identifier, concurrency, rate_limit, rate_period, paused, running "
               "FROM errands.task_limits")
COUNTS = "SELECT state, task_identifier, jobs, estimated FROM errands.dashboard_counts(%s)"
CALLS = {
    ("queue", "pause"): "SELECT errands.pause_queue(%s)",
    ("queue", "resume"): "SELECT errands.resume_queue(%s)",
    ("queue", "limits"): "SELECT errands.set_queue_limits(%s, %s, %s, %s::interval)",
    ("task", "pause"): "SELECT errands.pause_task(%s)",
    ("task", "resume"): "SELECT errands.resume_task(%s)",
    ("task", "limits"): "SELECT errands.set_task_limits(%s, %s, %s, %s::interval)",
}


def _optional_int(name: str, value: Any) -> int | None:
    text = str(value or "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise HTTPException(400, f"{name}: expected a whole number or nothing, got {text!r}")
    return int(text)


def routes(dash: Dashboard) -> list[BaseRoute]:
    async def queues(request: Request) -> Response:
        queue_rows = await dash.db.rows(QUEUES, [QUEUE_LIMIT + 1])
        limits = {r["task_identifier"]: r for r in await dash.db.rows(TASK_LIMITS)}
        tasks: dict[str, dict[str, Any]] = {}
        estimated = False
        for r in await dash.db.rows(COUNTS, [dash.options.exact_count_below]):
            t = tasks.setdefault(r["task_identifier"], dict.fromkeys(LIVE_STATES, 0))
            t[r["state"]] += r["jobs"]
            estimated = estimated or r["estimated"]
        for name in limits:
            tasks.setdefault(name, dict.fromkeys(LIVE_STATES, 0))
        return dash.render.page(
            request, "queues.html", queues=queue_rows[:QUEUE_LIMIT],
            more_queues=len(queue_rows) > QUEUE_LIMIT,
            tasks=sorted(tasks.items()), limits=limits, estimated=estimated)

    async def act(request: Request, kind: str) -> Response:
        name = request.path_params["name"]
        action = request.path_params["action"]
        call = CALLS.get((kind, action))
        if call is None:
            raise HTTPException(404, f"no action {action!r}")
        form = await checked_form(request)
        params: list[Any] = [name]
        if action == "limits":
            params += [_optional_int("concurrency", form.get("concurrency")),
                       _optional_int("rate_limit", form.get("rate_limit")),
                       str(form.get("rate_period") or "").strip() or None]
        try:
            await dash.db.rows(call, params)
        except psycopg.Error as exc:
            return redirect(request, "/queues", f"{kind} {name}: {first_line(exc)}")
        done = {"pause": "paused", "resume": "resumed", "limits": "limits set"}[action]
        return redirect(request, "/queues", f"{kind} {name}: {done}")

    return [Route("/queues", queues, methods=["GET"]),
            Route("/queues/{name:path}/{action}", partial(act, kind="queue"), methods=["POST"]),
            Route("/tasks/{name:path}/{action}", partial(act, kind="task"), methods=["POST"])]

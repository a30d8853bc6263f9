"""GET /workers, GET /cron and POST /cron/{identifier}/run (errands.run_cron_now)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from errands.dashboard._render import first_line, redirect
from errands.dashboard._security import checked_form

if TYPE_CHECKING:
    from errands.dashboard._app import Dashboard

WORKERS = ("SELECT id, host, pid, started_at, last_heartbeat, now() - last_heartbeat AS age, "
           "state, running_job_ids, session_lock FROM errands.dashboard_workers()")
CRON = ("SELECT identifier, source, task, options::text AS options, payload::text AS payload, "
        "last_execution, next_run FROM errands.dashboard_cron()")


def routes(dash: Dashboard) -> list[BaseRoute]:
    async def workers(request: Request) -> Response:
        return dash.render.page(request, "workers.html", workers=await dash.db.rows(WORKERS))

    async def cron(request: Request) -> Response:
        return dash.render.page(request, "cron.html", items=await dash.db.rows(CRON))

    async def run_now(request: Request) -> Response:
        await checked_form(request)
        identifier = request.path_params["identifier"]
        try:
            row = await dash.db.row("SELECT errands.run_cron_now(%s) AS id", [identifier])
        except psycopg.Error as exc:
            return redirect(request, "/cron", f"cron {identifier}: {first_line(exc)}")
        return redirect(request, "/cron", f"cron {identifier}: added job {row and row['id']}")

    return [Route("/workers", workers, methods=["GET"]),
            Route("/cron", cron, methods=["GET"]),
            Route("/cron/{identifier:path}/run", run_now, methods=["POST"])]

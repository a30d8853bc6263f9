"""POST actions on jobs, one by one and in bulk for a filter. Each is ONE call of
the public SQL API (reschedule_jobs, cancel_jobs, remove_jobs); a bulk action
passes the filter's ids (errands.dashboard_job_ids) as an argument of that call."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import psycopg
from psycopg import sql
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from errands.dashboard._filters import FilterError, JobFilter
from errands.dashboard._render import first_line, redirect
from errands.dashboard._security import checked_form

if TYPE_CHECKING:
    from errands.dashboard._app import Dashboard

ACTIONS = ("retry", "cancel", "remove", "reschedule")

# {ids}: %s (one job) or the filter's sub-query. n: jobs the call acted on.
CALLS: dict[str, str] = {
    "retry": "SELECT count(*) AS n, 0 AS requested FROM errands.reschedule_jobs({ids}, "
             "run_at => now(), attempts => 0)",
    "reschedule": "SELECT count(*) AS n, 0 AS requested FROM errands.reschedule_jobs({ids}, "
                  "run_at => %s)",
    "cancel": "SELECT count(*) FILTER (WHERE outcome = 'cancelled') AS n, "
              "count(*) FILTER (WHERE outcome = 'cancel_requested') AS requested "
              "FROM errands.cancel_jobs({ids})",
    "remove": "SELECT count(*) AS n, 0 AS requested FROM errands.remove_jobs({ids})",
}
PAST = {"retry": "retried", "reschedule": "rescheduled", "cancel": "cancelled",
        "remove": "removed"}


def parse_run_at(value: str) -> datetime:
    """A datetime-local input (no zone: UTC) or an ISO time."""
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(400, f"run_at: not a date and time: {value!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def message(action: str, row: dict[str, Any] | None, asked: str) -> str:
    n = row["n"] if row else 0
    text = f"{PAST[action]} {n} of {asked}"
    if row and row["requested"]:
        text += f"; cancellation requested for {row['requested']} running"
    if action in ("retry", "reschedule", "remove") and n == 0:
        text += " (running jobs are left alone)"
    return text


def routes(dash: Dashboard) -> list[BaseRoute]:
    async def one(request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ACTIONS:
            raise HTTPException(404, f"no action {action!r}")
        form = await checked_form(request)
        job_id = request.path_params["job_id"]
        query = sql.SQL(CALLS[action].format(ids="ARRAY[%s]::bigint[]"))
        params: list[Any] = [job_id]
        if action == "reschedule":
            params.append(parse_run_at(str(form.get("run_at") or "")))
        back = f"/jobs/{job_id}" if action in ("retry", "reschedule") else "/jobs"
        try:
            row = await dash.db.row(query, params)
        except psycopg.Error as exc:
            return redirect(request, back, f"{action} job {job_id}: {first_line(exc)}")
        return redirect(request, back, message(action, row, f"job {job_id}"))

    async def bulk(request: Request) -> Response:
        form = await checked_form(request)
        action = str(form.get("action") or "")
        if action not in ACTIONS:
            raise HTTPException(400, f"action: expected one of {', '.join(ACTIONS)}, "
                                     f"got {action!r}")
        try:
            flt = JobFilter.parse({k: v for k, v in form.items() if k != "after"},
                                  dash.options.page_size)
        except FilterError as exc:
            raise HTTPException(400, str(exc)) from None
        if flt.finished:
            raise HTTPException(400, f"finished ({flt.state}) jobs take no actions")
        ids, params = flt.id_call(None, None, with_cursor=False)
        run_at = None
        if action == "reschedule":
            run_at = parse_run_at(str(form.get("run_at") or ""))
        if form.get("confirm") != "yes":
            count = await dash.db.row(
                sql.SQL("SELECT cardinality({}) AS n").format(ids), params)
            return dash.render.page(request, "bulk_confirm.html", action=action, flt=flt,
                                    count=count["n"] if count else 0,
                                    run_at=form.get("run_at") or "")
        query = sql.SQL(CALLS[action]).format(ids=ids)
        target = flt.query()
        target.pop("limit", None)
        path = "/jobs" + (f"?{urlencode(target)}" if target else "")
        try:
            row = await dash.db.row(query, [*params, *([run_at] if run_at else [])])
        except psycopg.Error as exc:
            return redirect(request, path, f"{action}: {first_line(exc)}")
        return redirect(request, path, message(action, row, "the filtered jobs"))

    return [Route("/jobs/bulk", bulk, methods=["POST"]),
            Route("/jobs/{job_id:int}/{action}", one, methods=["POST"])]

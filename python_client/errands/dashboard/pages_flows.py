"""GET /flows (recent flows and their step states) and GET /flows/{flow_id} (graph)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from errands.dashboard._svg import flow_graph

if TYPE_CHECKING:
    from errands.dashboard._app import Dashboard

FLOW_PAGE = 50
# The newest flows first (keyset on flow_id), each with its steps' states counted.
FLOWS = ("WITH f AS (SELECT DISTINCT flow_id FROM errands.flow_steps "
         "WHERE %(before)s::bigint IS NULL OR flow_id < %(before)s "
         "ORDER BY flow_id DESC LIMIT %(n)s) "
         "SELECT s.flow_id, count(*) AS steps, "
         "jsonb_object_agg(coalesce(s.state, 'gone'), 1) AS seen, "
         "array_agg(coalesce(s.state, 'gone') ORDER BY s.position) AS states "
         "FROM errands.flow_steps s JOIN f USING (flow_id) GROUP BY s.flow_id "
         "ORDER BY s.flow_id DESC")
STEPS = ("SELECT flow_id, step, job_id, position, depends_on, run_anyway, state, "
         "task_identifier, last_error FROM errands.flow_steps WHERE flow_id = %s "
         "ORDER BY position")


def routes(dash: Dashboard) -> list[BaseRoute]:
    async def flows(request: Request) -> Response:
        before = request.query_params.get("before", "")
        rows = await dash.db.rows(FLOWS, {"before": int(before) if before.isdigit() else None,
                                          "n": FLOW_PAGE + 1})
        more = len(rows) > FLOW_PAGE
        rows = rows[:FLOW_PAGE]
        return dash.render.page(request, "flows.html", flows=rows,
                                next_before=rows[-1]["flow_id"] if more else None)

    async def flow(request: Request) -> Response:
        flow_id = request.path_params["flow_id"]
        steps = await dash.db.rows(STEPS, [flow_id])
        if not steps:
            raise HTTPException(404, f"no flow {flow_id}")
        return dash.render.page(request, "flow.html", flow_id=flow_id, steps=steps,
                                graph=flow_graph(steps))

    return [Route("/flows", flows, methods=["GET"]),
            Route("/flows/{flow_id:int}", flow, methods=["GET"])]

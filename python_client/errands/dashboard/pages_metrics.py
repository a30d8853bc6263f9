"""GET /metrics: the database-wide Prometheus gauges of errands.metrics_db (jobs by
state, task and queue; the oldest waiting job; workers by state), behind the
dashboard's credentials like every route.  prometheus_client is imported at the
first scrape, so a dashboard nobody scrapes never loads it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from errands.dashboard._app import Dashboard

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # errands.metrics_db.CONTENT_TYPE


def routes(dash: Dashboard) -> list[BaseRoute]:
    async def metrics(request: Request) -> Response:
        return Response(await dash.db.metrics(), media_type=None,
                        headers={"Content-Type": CONTENT_TYPE})

    return [Route("/metrics", metrics, methods=["GET"])]

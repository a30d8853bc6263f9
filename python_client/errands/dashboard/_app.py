"""create_app: the Starlette application and what its pages share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from errands.dashboard._db import Database
from errands.dashboard._options import DashboardOptions
from errands.dashboard._render import Renderer
from errands.dashboard._security import SecurityMiddleware

STATIC = Path(__file__).parent / "static"


@dataclass
class Dashboard:
    """What every page module gets: the options, the database and the templates."""

    options: DashboardOptions
    db: Database
    render: Renderer


def create_app(conninfo: str, options: DashboardOptions | None = None) -> Starlette:
    """The dashboard as an ASGI application (mountable in FastAPI or Starlette).

    ``conninfo``: a libpq connection string for a role with
    ``errands.grant_dashboard(role, read_only)`` (or the schema owner).
    """
    from errands.dashboard import (
        pages_actions,
        pages_flows,
        pages_jobs,
        pages_metrics,
        pages_overview,
        pages_queues,
        pages_workers,
    )

    opts = options or DashboardOptions()
    dash = Dashboard(opts, Database(conninfo, opts.max_connections), Renderer(opts))
    routes: list[BaseRoute] = []
    for module in (pages_overview, pages_jobs, pages_actions, pages_queues, pages_workers,
                   pages_flows, pages_metrics):
        routes.extend(module.routes(dash))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return dash.render.error(request, exc.status_code, str(exc.detail),
                                 dict(exc.headers or {}))

    async def favicon(request: Request) -> Response:
        # The browser asks for /favicon.ico by itself: our own SVG, not a 404.
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": "max-age=86400"})

    routes.append(Route("/favicon.ico", favicon, methods=["GET"]))
    routes.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await dash.db.close()

    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityMiddleware, options=opts, render=dash.render)],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )

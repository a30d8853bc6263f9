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
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from errands.dashboard._db import Database
from errands.dashboard._options import DashboardOptions
from errands.dashboard._render import Renderer
from errands.dashboard._security import SecurityMiddleware


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
    routes.append(Mount("/static", StaticFiles(directory=Path(__file__).parent / "static"),
                        name="static"))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await dash.db.close()

    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityMiddleware, options=opts)],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )

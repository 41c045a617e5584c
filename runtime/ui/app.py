"""The Starlette app: routes, the package's static files, the gate, and a lifespan that
starts the watchers and, at shutdown, ends every live stream first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nats.aio.client import Client
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from runtime.ui import api, live, runs_api
from runtime.ui.assets import HashedStatic, index_page, page_response
from runtime.ui.auth import Gate
from runtime.ui.mesh_view import MeshWatch
from runtime.ui.settings import Settings
from runtime.ui.state import UiState


def create_app(nc: Client, settings: Settings) -> Starlette:
    """The page's app on an open NATS client; assets are checked here, not at first use."""
    page = index_page()  # a missing or misnamed asset fails now, at start
    state = UiState(nc=nc, settings=settings, watch=MeshWatch(nc, settings.poll))

    async def index(request: Request) -> Response:
        return page_response(page)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    routes = [
        Route("/", index),
        Route("/api/mesh", api.mesh),
        Route("/api/mesh/events", live.mesh_events),
        Route("/api/agents/{name:str}", api.agent),
        Route("/api/agents/{name:str}/call", api.call_agent, methods=["POST"]),
        Route("/api/errors", api.errors),
        Route("/api/errors/events", live.error_events),
        *runs_api.routes(),
        Mount("/static", app=HashedStatic(), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(Gate, token=settings.token)])
    app.state.ui = state
    return app

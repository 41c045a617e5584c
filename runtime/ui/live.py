"""Server-sent events: the mesh and recent errors as they change (sse-starlette does the
pings, the send timeout and noticing a page that went away)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request

from runtime.ui.state import UiState

PING = 15  # seconds between keep-alive comments, so proxies keep the stream open
SEND_TIMEOUT = 10  # a page that takes no bytes for this long is dropped


def event_stream(events: AsyncIterator[dict[str, Any]]) -> EventSourceResponse:
    async def encoded() -> AsyncIterator[dict[str, str]]:
        yield {"event": "hello", "data": "{}"}  # the headers go out now, not at the first event
        async for event in events:
            yield {"event": event["event"], "data": json.dumps(event["data"], default=str)}

    return EventSourceResponse(encoded(), ping=PING, send_timeout=SEND_TIMEOUT,
                               headers={"Cache-Control": "no-store"})


async def mesh_events(request: Request) -> EventSourceResponse:
    state = UiState.of(request)
    first = [{"event": "mesh", "data": await state.watch.now()}]
    return event_stream(state.watch.topic.follow(first))


async def error_events(request: Request) -> EventSourceResponse:
    state = UiState.of(request)
    return event_stream(state.errors.topic.follow())

"""Calling an agent over NATS request/reply, as pipelines, `ctx.call` and the CLI do."""

from __future__ import annotations

import uuid
from typing import Any

import nats.errors
import orjson
from nats.aio.client import Client

from runtime.core import protocol as p


async def call_agent(nc: Client, name: str, payload: Any, timeout: float,
                     request_id: str | None = None) -> Any:
    """Request `name` and return its output; raises MeshError (not_found, timeout, or its own)."""
    request_id = request_id or uuid.uuid4().hex
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    try:
        reply = await nc.request(p.agent_subject(name), body, timeout=max(timeout, 0.001),
                                 headers={p.HDR_REQUEST_ID: request_id})
    except nats.errors.NoRespondersError:
        raise p.MeshError(p.NOT_FOUND, f"no agent named '{name}' is serving",
                          agent=name, request_id=request_id) from None
    except nats.errors.TimeoutError:
        raise p.MeshError(p.TIMEOUT, f"'{name}' did not answer within {timeout:g}s",
                          agent=name, request_id=request_id) from None
    headers = reply.headers or {}
    if headers.get(p.HDR_STATUS) == "error":
        raise p.MeshError.from_body(reply.data, agent=name, request_id=request_id)
    return orjson.loads(reply.data) if reply.data else {}

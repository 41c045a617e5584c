"""Calling an agent over NATS request/reply, as pipelines, `ctx.call` and the CLI do.

Every call carries `X-Mesh-Timeout`, the caller's remaining budget in seconds, so the
agent knows when nobody waits any more and a deadline holds across hops, and W3C
`traceparent`, so the callee continues the caller's trace (runtime/tracing).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import nats.errors
import orjson
from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.core.idempotency import IDEMPOTENCY_KEY
from runtime.core.names import name_problem
from runtime.core.requestids import new_request_id
from runtime.core.text import is_request_id
from runtime.nats.guard import check_fits
from runtime.tracing import outgoing, send_span

# How much longer than its budget a caller listens: an agent answers `expired` or `timeout`
# at the deadline it was sent, and that answer says more than the caller's own timeout.
ANSWER_GRACE = 0.1


def budget_header(seconds: float) -> str:
    """The remaining budget as X-Mesh-Timeout text: decimal seconds, millisecond precision."""
    return f"{max(seconds, 0.0):.3f}"


async def call_agent(nc: Client, name: str, payload: Any, timeout: float,
                     request_id: str | None = None, *, capability: bool = False) -> Any:
    """Request `name` (an agent, or with `capability` any agent offering it) and return its
    output; raises MeshError (not_found, timeout, or the agent's own)."""
    reply = await request(nc, name, payload, timeout, request_id, capability=capability)
    return orjson.loads(reply.data) if reply.data else {}


async def request(nc: Client, name: str, payload: Any, timeout: float,
                  request_id: str | None = None, *, capability: bool = False,
                  headers: dict[str, str] | None = None) -> Any:
    """The successful reply message itself (its headers say who answered)."""
    request_id = request_id or new_request_id()
    if (problem := name_problem(name, "capability" if capability else "name")) is not None:
        raise p.MeshError(p.INVALID_INPUT, problem, request_id=request_id)  # before any publish
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    subject = p.capability_subject(name) if capability else p.agent_subject(name)
    # Injected inside the CLIENT span (when recorded) and awaited there; else the trace
    # context alone, continued or new.
    with send_span(subject, request_id) or nullcontext(outgoing()) as trace_headers:
        return await _request(nc, subject, name, body, timeout, request_id, capability,
                              {**(headers or {}), **trace_headers})


async def _request(nc: Client, subject: str, name: str, body: bytes, timeout: float,
                   request_id: str, capability: bool, headers: dict[str, str]) -> Any:
    what = f"capability '{name}'" if capability else f"'{name}'"
    sent = {p.HDR_REQUEST_ID: request_id, p.HDR_TIMEOUT: budget_header(timeout), **headers}
    key = IDEMPOTENCY_KEY.get()
    if key is not None:  # a run's step: the same key on every try and after a resume
        sent[p.HDR_IDEMPOTENCY_KEY] = key
    check_fits(nc, body, sent, f"the payload for {what}")
    try:
        reply = await nc.request(subject, body, timeout=max(timeout, 0.001) + ANSWER_GRACE,
                                 headers=sent)
    except nats.errors.NoRespondersError:
        message = (f"no agent offers capability '{name}'" if capability
                   else f"no agent named '{name}' is serving")
        raise p.MeshError(p.NOT_FOUND, message, agent=name, request_id=request_id) from None
    except nats.errors.TimeoutError:
        raise p.MeshError(p.TIMEOUT, f"{what} did not answer within {timeout:g}s",
                          agent=name, request_id=request_id) from None
    headers = reply.headers or {}
    if headers.get(p.HDR_STATUS) == "error":
        raise p.MeshError.from_body(reply.data, agent=headers.get(p.HDR_SOURCE) or name,
                                    request_id=request_id)
    return reply


async def start_run(nc: Client, name: str, payload: Any, timeout: float,
                    request_id: str | None = None) -> str:
    """Start the pipeline `name` with X-Mesh-Async (answered at once); its run id."""
    reply = await request(nc, name, payload, timeout, request_id,
                          headers={p.HDR_ASYNC: "true"})
    answer = orjson.loads(reply.data) if reply.data else {}
    run = answer.get("run") if isinstance(answer, dict) else None
    if not isinstance(run, str) or not is_request_id(run):
        raise p.MeshError(p.INVALID_OUTPUT, f"'{name}' did not answer a run id: is it a "
                          "pipeline of mesh-runtime 0.2 or later?", agent=name)
    return run

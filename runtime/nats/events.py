"""What a handler publishes without waiting for anyone: its events and its progress.

An event: CloudEvents binary mode on mesh.agent.<source>.events (fire and forget, as
OpenAgentMesh's publisher agents do), measured against max_payload first.

Progress (`ctx.progress(fraction, message)`): a `step_progress` event in the run journal.
The handler may run in any process; its request id is the id of the run that called it, so
the event goes straight to `mesh.run.<id>.step_progress`, in the journal's event shape
(runtime.runs.events), with the agent's name. Published without an ack: progress is a
hint, and it never fails or slows the handler.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.core.events import event_headers, event_type_problem, events_subject
from runtime.tracing import TRACEPARENT, current

log = logging.getLogger("mesh-runtime.runs")

PROGRESS_SUBJECT = "mesh.run.{}.step_progress"
MAX_PROGRESS_MESSAGE = 2048


def _header_bytes(headers: dict[str, str]) -> int:
    return 12 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())


async def publish_event(nc: Client, source: str, event_type: str, data: Any) -> dict[str, str]:
    """Publish one event of `source` (a name the loader checked); its headers. Raises
    MeshError: invalid_input for a bad type or data that is not JSON, invalid_output for an
    event over the server's max_payload."""
    problem = event_type_problem(event_type)
    if problem is not None:
        raise p.MeshError(p.INVALID_INPUT, problem, agent=source)
    try:
        body = orjson.dumps(data)
    except TypeError as exc:
        raise p.MeshError(p.INVALID_INPUT, f"event data is not JSON: {exc}", agent=source) from None
    headers = event_headers(source, event_type)
    hop = current()  # the request's trace, continued with this hop's span as the parent
    if hop is not None:
        headers[TRACEPARENT] = hop.headers()[TRACEPARENT]
    size = len(body) + _header_bytes(headers)
    if size > nc.max_payload:
        raise p.MeshError(p.INVALID_OUTPUT, f"the event is {size} bytes with headers, over the "
                          f"NATS server's max_payload of {nc.max_payload} bytes", agent=source,
                          details={"size": size, "max_payload": nc.max_payload})
    await nc.publish(events_subject(source), body, headers=headers)
    return headers


async def publish_progress(nc: Client, run_id: str, agent: str, fraction: float | None,
                           message: str) -> None:
    """Publish one step_progress event; a fraction outside 0..1 is clamped, not refused."""
    if fraction is not None:
        fraction = float(fraction)
        fraction = None if fraction != fraction else min(max(fraction, 0.0), 1.0)  # NaN: none
    event: dict[str, Any] = {
        "run": run_id, "pipeline": None, "event": "step_progress", "at": time.time(),
        "step": None, "attempt": None, "trace_id": None, "agent": agent,
        "progress": fraction, "message": str(message)[:MAX_PROGRESS_MESSAGE]}
    try:
        await nc.publish(PROGRESS_SUBJECT.format(run_id), orjson.dumps(event))
    except Exception as exc:  # progress is a hint: the handler goes on
        log.debug("progress of run %s not published: %s", run_id, exc)

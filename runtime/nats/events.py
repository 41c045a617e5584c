"""Publishing an event: CloudEvents binary mode on mesh.agent.<source>.events (fire and
forget, as OpenAgentMesh's publisher agents do), measured against max_payload first."""

from __future__ import annotations

from typing import Any

import orjson
from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.core.events import event_headers, event_type_problem, events_subject


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
    size = len(body) + _header_bytes(headers)
    if size > nc.max_payload:
        raise p.MeshError(p.INVALID_OUTPUT, f"the event is {size} bytes with headers, over the "
                          f"NATS server's max_payload of {nc.max_payload} bytes", agent=source,
                          details={"size": size, "max_payload": nc.max_payload})
    await nc.publish(events_subject(source), body, headers=headers)
    return headers

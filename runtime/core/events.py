"""Events out: CloudEvents 1.0 in binary mode on `mesh.agent.<name>.events`, the subject
OpenAgentMesh's publisher agents use. The body is the event's data (JSON); the attributes
are headers (`ce-specversion`, `ce-id`, `ce-source`, `ce-type`, `ce-time`)."""

from __future__ import annotations

import re
import time
import uuid
from contextvars import ContextVar

EVENTS_SUFFIX = ".events"
EVENT_TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,127}$"
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)

HDR_CE_SPECVERSION = "ce-specversion"
HDR_CE_ID = "ce-id"
HDR_CE_SOURCE = "ce-source"
HDR_CE_TYPE = "ce-type"
HDR_CE_TIME = "ce-time"
HDR_CONTENT_TYPE = "content-type"
HDR_TRACEPARENT = "traceparent"

# The W3C trace context of the request being served (set per request task), so that an
# event a handler or a step emits continues the request's trace.
TRACEPARENT: ContextVar[str | None] = ContextVar("mesh_traceparent", default=None)
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def continue_trace(headers: dict[str, str] | None) -> None:
    """Note a request's `traceparent` (when well formed; else none) for the events it emits."""
    value = headers.get(HDR_TRACEPARENT) if headers else None
    if value is not None and not _TRACEPARENT.fullmatch(value):
        value = None
    if value is not None or TRACEPARENT.get() is not None:
        TRACEPARENT.set(value)


def events_subject(name: str) -> str:
    """Where agent or pipeline `name` publishes its events."""
    return f"mesh.agent.{name}{EVENTS_SUFFIX}"


def event_type_problem(event_type: object) -> str | None:
    """Why `event_type` cannot be an event's type (it becomes a header), or None."""
    if not isinstance(event_type, str):
        return f"an event type is a string, not {type(event_type).__name__}"
    if not _EVENT_TYPE.fullmatch(event_type):
        shown = event_type if len(event_type) <= 60 else event_type[:57] + "..."
        return (f"invalid event type {shown!r}: 1 to 128 characters of letters, digits and "
                ". _ : / + -, starting with a letter or digit (like order.accepted)")
    return None


def event_headers(source: str, event_type: str) -> dict[str, str]:
    """The CloudEvents binary-mode headers of one new event (and the request's traceparent)."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    headers = {HDR_CE_SPECVERSION: "1.0", HDR_CE_ID: uuid.uuid4().hex, HDR_CE_SOURCE: source,
               HDR_CE_TYPE: event_type, HDR_CE_TIME: stamp, HDR_CONTENT_TYPE: "application/json"}
    traceparent = TRACEPARENT.get()
    if traceparent:
        headers[HDR_TRACEPARENT] = traceparent
    return headers

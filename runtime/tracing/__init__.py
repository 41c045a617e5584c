"""Trace context on every hop (W3C `traceparent`), and spans when a collector is configured.

Propagation needs nothing installed: where a request is served its headers become the
current `Hop` (a ContextVar), and every message sent on its behalf carries `outgoing()`.
Spans need the `otel` extra and `tracing:` (or OTEL_EXPORTER_OTLP_ENDPOINT); see
docs/tracing.md.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from runtime.tracing.hop import (
    Hop,
    adopt,
    current,
    current_trace_id,
    enter,
    outgoing,
    trace_id_for,
    traceparent_for,
)
from runtime.tracing.settings import TracingSettings
from runtime.tracing.setup import dropped, recorder, start, stop
from runtime.tracing.w3c import TRACEPARENT, TRACESTATE, parse_traceparent, trace_id_in

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "Hop",
    "TracingSettings",
    "adopt",
    "current",
    "current_trace_id",
    "dropped",
    "enter",
    "outgoing",
    "parse_traceparent",
    "recorder",
    "send_span",
    "start",
    "step_span",
    "stop",
    "trace_id_for",
    "trace_id_in",
    "traceparent_for",
]


def send_span(subject: str, request_id: str) -> AbstractContextManager[dict[str, str]] | None:
    """A CLIENT span for a message sent now, yielding its trace headers; None when this
    task's request is not recorded (then send `outgoing()`)."""
    hop = current()
    if hop is None or hop.recorder is None:
        return None
    return hop.recorder.send(subject, hop, request_id)


def step_span(path: str) -> AbstractContextManager[Any] | None:
    """A pipeline step's span; None when this task's request is not recorded (or the step
    is replayed from a journal: call nothing then)."""
    hop = current()
    if hop is None or hop.recorder is None:
        return None
    return hop.recorder.step(hop, path)

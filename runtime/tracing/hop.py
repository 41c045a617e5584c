"""The trace context of the request being served, carried by a ContextVar.

A `Hop` is made where a request is served (from its headers) and read where a message
is sent on its behalf (`outgoing`), so a handler's `ctx.call`, a pipeline's steps,
broadcasts and state writes continue the caller's trace without passing anything by
hand. Ids are random bits, made only where a request is served or sent.

The var is set inside the request's own task, whose context ends with it; a request
that nothing can observe (a handler without `ctx`, no spans) gets no Hop at all.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from runtime.tracing.w3c import (
    TRACEPARENT,
    TRACESTATE,
    SpanRef,
    clean_tracestate,
    new_span_id,
    new_trace_id,
    parse_traceparent,
)


class Hop:
    """One request served here: its trace, this hop's span id, and whether it is sampled."""

    __slots__ = ("parent", "recorder", "sampled", "span", "span_id", "trace_id", "tracestate")

    def __init__(self, parent: SpanRef | None, tracestate: str | None, sampled: bool,
                 trace_id: str | None = None, span_id: str | None = None):
        self.parent = parent  # the caller's span, when it sent a valid traceparent
        self.trace_id = parent.trace_id if parent is not None else trace_id or new_trace_id()
        self.span_id = span_id or new_span_id()  # this hop's own; callees' parent
        self.sampled = sampled
        self.tracestate = tracestate
        self.span: int | None = None  # the trace id as a number, once this hop is recorded
        self.recorder: Any = None  # and what records it (runtime.tracing.spans.Recorder)

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | None, span_id: str | None = None) -> Hop:
        """Continue the trace a request's headers carry, or start one (never raises)."""
        value = headers.get(TRACEPARENT) if headers else None
        parent = parse_traceparent(value) if value is not None else None
        if parent is None:  # no trace, or a malformed one: a new trace, and its state goes
            return cls(None, None, False, span_id=span_id)
        assert headers is not None
        return cls(parent, clean_tracestate(headers.get(TRACESTATE)), parent.sampled,
                   span_id=span_id)

    def headers(self, span_id: str | None = None) -> dict[str, str]:
        """`traceparent` (and `tracestate`) for a message sent on this request's behalf."""
        flags = "01" if self.sampled else "00"
        found = {TRACEPARENT: f"00-{self.trace_id}-{span_id or self.span_id}-{flags}"}
        if self.tracestate:
            found[TRACESTATE] = self.tracestate
        return found


_current: ContextVar[Hop | None] = ContextVar("mesh_trace_hop", default=None)


def current() -> Hop | None:
    """The request being served in this task, if it has trace context."""
    return _current.get()


def enter(headers: Mapping[str, str] | None) -> Hop:
    """The Hop of the request being served in this task, made from its headers once."""
    hop = _current.get()
    if hop is None:
        hop = Hop.from_headers(headers)
        _current.set(hop)  # no reset: this is the request's own task and context
    return hop


def adopt(trace_id: str) -> Hop | None:
    """Continue a known trace in this task (a run resumed by another process, from its
    journal's trace_id); None, and nothing changed, when `trace_id` is not one."""
    if parse_traceparent(f"00-{trace_id}-{'1' * 16}-00") is None:
        return None
    hop = Hop(None, None, False, trace_id=trace_id)
    _current.set(hop)
    return hop


def attach(hop: Hop) -> Any:
    """Make `hop` current; returns the token `detach` takes."""
    return _current.set(hop)


def detach(token: Any) -> None:
    _current.reset(token)


def outgoing() -> dict[str, str]:
    """Trace headers for a message sent now: the current request's trace continued, or
    outside any request a new trace (not sampled: a process that records decides)."""
    hop = _current.get()
    if hop is not None:
        return hop.headers()
    return {TRACEPARENT: f"00-{new_trace_id()}-{new_span_id()}-00"}


def current_trace_id() -> str | None:
    """The trace id of the request being served in this task, if any."""
    hop = _current.get()
    return hop.trace_id if hop is not None else None


def trace_id_for(headers: Mapping[str, str] | None) -> str:
    """The trace id of a request: its current Hop's, else what its headers carry, else a
    new one (a failure log line always names a trace)."""
    hop = _current.get()
    if hop is not None:
        return hop.trace_id
    ref = parse_traceparent(headers.get(TRACEPARENT)) if headers else None
    return ref.trace_id if ref is not None else new_trace_id()


def traceparent_for(headers: Mapping[str, str] | None) -> str:
    """A `traceparent` naming a request's trace: its current Hop's, else the valid one its
    headers carry, else a new trace's (a failed request's answer and error name one)."""
    hop = _current.get()
    if hop is not None:
        return hop.headers()[TRACEPARENT]
    value = headers.get(TRACEPARENT) if headers else None
    if value is not None and parse_traceparent(value) is not None:
        return value
    return f"00-{new_trace_id()}-{new_span_id()}-00"


def ratio_sampled(trace_id: str, ratio: float) -> bool:
    """OpenTelemetry's TraceIdRatioBased rule: the trace id's low 64 bits under the bound,
    so every process with the same ratio takes the same decision for a trace."""
    if ratio >= 1.0:
        return True
    return int(trace_id[16:], 16) < int(ratio * (1 << 64))


def draw(ratio: float) -> bool:
    """A new trace's sampling decision."""
    return ratio >= 1.0 or random.random() < ratio

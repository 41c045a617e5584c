"""The mesh's spans, when tracing exports (imported only then: it needs the `otel` extra).

Modelled on OpenTelemetry's aio-pika instrumentation: the server wrapper extracts the
caller's context, attaches, runs and detaches in `finally`; a send injects the headers
*inside* its CLIENT span and awaits the publish there. Three choices keep a span cheap
on the request path: whether a request is sampled is decided before anything is made
(an unsampled one costs a dict lookup and a random draw); a span is one `Record` (a
tuple) made when it ends, not a live SDK span; and records wait in a bounded queue that
a thread of their own encodes and sends (runtime/tracing/batches.py). A handler's own
OpenTelemetry spans nest under the request's span: its context is attached while the
handler runs, and they go through the SDK as usual.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode

from runtime.core.protocol import MeshError
from runtime.tracing import hop as hops
from runtime.tracing.w3c import TRACEPARENT, parse_traceparent

SCOPE = InstrumentationScope("mesh-runtime")
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
_SERVER = SpanKind.SERVER.value
_PROCESS = {"messaging.system": "nats", "messaging.operation.type": "process"}
_bits = random.getrandbits
# The innermost open span of the mesh's in this task (a step's), parent of what it sends.
_parent: ContextVar[int] = ContextVar("mesh_trace_parent", default=0)


def _code_of(exc: BaseException) -> str:
    """A MeshError's (or a step failure's) code; else the exception's type."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) and code else type(exc).__name__


def _messaging(operation: str, subject: str, request_id: str) -> dict[str, Any]:
    return {"messaging.system": "nats", "messaging.operation.type": operation,
            "messaging.destination.name": subject, "mesh.request_id": request_id}


class Recorder:
    """Makes the mesh's spans and hands each, finished, to `sink`."""

    def __init__(self, sink: Callable[[Record], None], ratio: float):
        self.sink = sink
        self.ratio = ratio
        # Whether handlers use OpenTelemetry themselves (they asked the provider for a
        # tracer): only then is each request's span context attached for theirs to nest.
        self.handlers_trace = False

    def sampled(self, headers: Mapping[str, str] | None) -> bool:
        """Whether a request is recorded: a caller's sampled trace always; else the same
        trace-id ratio rule as OpenTelemetry's TraceIdRatioBased, or a draw for a new one."""
        value = headers.get(TRACEPARENT) if headers else None
        parent = parse_traceparent(value) if value is not None else None
        if parent is None:
            return hops.draw(self.ratio)
        return parent.sampled or hops.ratio_sampled(parent.trace_id, self.ratio)

    async def serve(self, answer: Awaitable[MeshError | None], headers: Mapping[str, str] | None,
                    subject: str, request_id: str) -> MeshError | None:
        """Await `answer` (a sampled request being served) inside its SERVER span."""
        span_id = _bits(64) or 1
        if headers is None or TRACEPARENT not in headers:  # a new trace: no parsing, no hex
            trace_id, parent = _bits(128) or 1, 0
            hop = hops.Hop(None, None, True, f"{trace_id:032x}", f"{span_id:016x}")
        else:
            hop = hops.Hop.from_headers(headers, f"{span_id:016x}")
            trace_id = int(hop.trace_id, 16)
            parent = int(hop.parent.span_id, 16) if hop.parent is not None else 0
        hop.sampled, hop.recorder, hop.span = True, self, trace_id
        start, code = time.time_ns(), "ok"
        token = hops.attach(hop)
        attached = None
        if self.handlers_trace:
            here = SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED)
            attached = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(here)))
        try:
            error = await answer
            if error is not None:
                code = error.code
            return error
        except BaseException as exc:
            code = _code_of(exc)
            raise
        finally:
            if attached is not None:
                otel_context.detach(attached)
            hops.detach(token)
            self.sink((f"process {subject}", _SERVER, trace_id, span_id, parent, True, start,
                       time.time_ns(), {**_PROCESS, "messaging.destination.name": subject,
                                        "mesh.request_id": request_id, "mesh.code": code},
                       "" if code == "ok" else code))

    @contextlib.contextmanager
    def step(self, hop: hops.Hop, path: str) -> Iterator[None]:
        """A pipeline step's span, named by its path (`summary`, `analysis.keywords`,
        `per_section`), the parent of the calls it makes."""
        parent = _parent.get() or int(hop.span_id, 16)
        span_id, start, code = _bits(64) or 1, time.time_ns(), "ok"
        parent_token = _parent.set(span_id)
        try:
            yield
        except BaseException as exc:
            code = _code_of(exc)
            raise
        finally:
            _parent.reset(parent_token)
            self._end(f"step {path}", SpanKind.INTERNAL, hop.span or 0, span_id, parent, start,
                      {"mesh.step": path}, code)

    @contextlib.contextmanager
    def send(self, subject: str, hop: hops.Hop, request_id: str) -> Iterator[dict[str, str]]:
        """A CLIENT span for one message sent; yields the headers that carry it."""
        parent = _parent.get() or int(hop.span_id, 16)
        span_id, start, code = _bits(64) or 1, time.time_ns(), "ok"
        try:
            yield hop.headers(f"{span_id:016x}")
        except BaseException as exc:
            code = _code_of(exc)
            raise
        finally:
            self._end(f"send {subject}", SpanKind.CLIENT, hop.span or 0, span_id, parent, start,
                      _messaging("send", subject, request_id), code)

    def _end(self, name: str, kind: SpanKind, trace_id: int, span_id: int, parent: int,
             start: int, attributes: dict[str, Any], code: str,
             remote_parent: bool = False) -> None:
        self.sink((name, kind.value, trace_id, span_id, parent, remote_parent, start,
                   time.time_ns(), attributes, "" if code == "ok" else code))


# A finished span of the mesh's, as a plain tuple (the cheapest thing to make): name,
# SpanKind's value, trace id, span id, parent span id (0: a root), whether the parent is
# remote, start and end (ns since the epoch), attributes, error code ("": status unset).
Record = tuple[str, int, int, int, int, bool, int, int, dict[str, Any], str]


def readable(record: Record, resource: Resource) -> ReadableSpan:
    """A Record as the SDK's exporters take it."""
    name, kind, trace_id, span_id, parent, remote, start, end, attributes, error = record
    return ReadableSpan(
        name=name, context=SpanContext(trace_id, span_id, False, _SAMPLED),
        parent=SpanContext(trace_id, parent, remote, _SAMPLED) if parent else None,
        resource=resource, attributes=attributes, kind=SpanKind(kind),
        instrumentation_scope=SCOPE, status=Status(StatusCode.ERROR, error) if error else _UNSET,
        start_time=start, end_time=end)

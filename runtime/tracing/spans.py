"""Spans, when tracing exports (imported only then: it needs the OpenTelemetry SDK).

Modelled on OpenTelemetry's aio-pika instrumentation: the server wrapper extracts the
caller's context, attaches, runs and detaches in `finally`; a send injects the headers
*inside* its CLIENT span and awaits the publish there. Whether a request is sampled is
decided here, before any span exists, so an unsampled request costs no OpenTelemetry call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode

from runtime.core.protocol import MeshError
from runtime.tracing import hop as hops
from runtime.tracing.w3c import TRACEPARENT, TRACESTATE, SpanRef

_step_path: ContextVar[str] = ContextVar("mesh_trace_step", default="")
REQUEST_ID = "mesh.request_id"  # also tells the sampler a span the mesh already sampled
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)


def _code_of(exc: BaseException) -> str:
    """A MeshError's (or a step failure's) code; else the exception's type."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) and code else type(exc).__name__


def _fail(span: Any, code: str) -> None:
    span.set_attribute("mesh.code", code)
    span.set_status(Status(StatusCode.ERROR, code))


class Recorder:
    """Makes the mesh's spans with one tracer, sampling `ratio` of new traces."""

    def __init__(self, tracer: trace.Tracer, ratio: float):
        self.tracer = tracer
        self.ratio = ratio

    def _sampled(self, parent: SpanRef | None) -> bool:
        if parent is None:
            return hops.draw(self.ratio)
        return parent.sampled or hops.ratio_sampled(parent.trace_id, self.ratio)

    async def serve(self, answer: Awaitable[MeshError | None], headers: Mapping[str, str] | None,
                    subject: str, request_id: str) -> MeshError | None:
        """Await `answer` (a request being served) inside its SERVER span, if sampled."""
        hop = hops.Hop.from_headers(headers)
        hop.sampled = self._sampled(hop.parent)
        token = hops.attach(hop)
        if not hop.sampled:
            try:
                return await answer
            finally:
                hops.detach(token)
        span = self.tracer.start_span(
            f"process {subject}", context=_remote(hop.parent), kind=SpanKind.SERVER,
            attributes={"messaging.system": "nats", "messaging.operation.type": "process",
                        "messaging.destination.name": subject, REQUEST_ID: request_id})
        ids = span.get_span_context()
        hop.trace_id, hop.span_id, hop.span = f"{ids.trace_id:032x}", f"{ids.span_id:016x}", span
        attached = otel_context.attach(trace.set_span_in_context(span))
        try:
            error = await answer
        except BaseException as exc:
            _fail(span, _code_of(exc))
            raise
        else:
            if error is None:
                span.set_attribute("mesh.code", "ok")
            else:
                _fail(span, error.code)
            return error
        finally:
            otel_context.detach(attached)
            hops.detach(token)
            span.end()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """A pipeline step's span, the parent of the calls it makes; a step inside a
        parallel branch is named by its path (`analysis.keywords`)."""
        outer = _step_path.get()
        path = f"{outer}.{name}" if outer else name
        token = _step_path.set(path)
        try:
            with self.tracer.start_as_current_span(
                    f"step {path}", kind=SpanKind.INTERNAL, attributes={"mesh.step": path},
                    record_exception=False, set_status_on_exception=False) as span:
                try:
                    yield
                except BaseException as exc:
                    _fail(span, _code_of(exc))
                    raise
        finally:
            _step_path.reset(token)

    @contextlib.contextmanager
    def send(self, subject: str, hop: hops.Hop, request_id: str) -> Iterator[dict[str, str]]:
        """A CLIENT span for one message sent; yields the headers that carry it."""
        with self.tracer.start_as_current_span(
                f"send {subject}", kind=SpanKind.CLIENT,
                attributes={"messaging.system": "nats", "messaging.operation.type": "send",
                            "messaging.destination.name": subject, REQUEST_ID: request_id},
                record_exception=False, set_status_on_exception=False) as span:
            try:
                yield hop.headers(f"{span.get_span_context().span_id:016x}")
            except BaseException as exc:
                _fail(span, _code_of(exc))
                raise


def _remote(parent: SpanRef | None) -> otel_context.Context | None:
    """The caller's span as the parent of ours (flagged sampled: the decision is made)."""
    if parent is None:
        return otel_context.Context()  # a root, whatever the task's own context holds
    remote = SpanContext(int(parent.trace_id, 16), int(parent.span_id, 16), is_remote=True,
                         trace_flags=_SAMPLED)
    return trace.set_span_in_context(NonRecordingSpan(remote), otel_context.Context())


__all__ = ["TRACEPARENT", "TRACESTATE", "Recorder"]

"""Span shapes and parentage with the OpenTelemetry SDK's in-memory exporter: the mesh's
server, step and send spans made by the Recorder, in one process (no NATS needed here;
tests/test_tracing_export.py runs the same through a real `up`)."""

from __future__ import annotations

import asyncio

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from runtime.core.protocol import MeshError
from runtime.tracing import current, outgoing, send_span, step_span
from runtime.tracing.encode import encode, resource_block
from runtime.tracing.spans import Record, Recorder, readable
from runtime.tracing.w3c import parse_traceparent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


RESOURCE = Resource.create({"service.name": "shop"})


def recorder(ratio: float = 1.0) -> tuple[Recorder, InMemorySpanExporter]:
    """A Recorder whose spans go, as the SDK's ReadableSpans, to its in-memory exporter."""
    memory = InMemorySpanExporter()
    processor = SimpleSpanProcessor(memory)
    return Recorder(lambda record: processor.on_end(readable(record, RESOURCE)), ratio), memory


def test_server_step_and_send_spans_nest_and_carry_their_ids() -> None:
    spans, memory = recorder()
    sent: list[dict[str, str]] = []

    async def handler() -> MeshError | None:
        with (step_span("summary") or _nothing(),
              send_span("mesh.agent.nlp.x", "rid") or _nothing() as headers):
            sent.append(headers)
        return None

    headers = {"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "a=1"}
    assert spans.sampled(headers)
    asyncio.run(spans.serve(handler(), headers, "mesh.agent.nlp.flow", "rid"))
    send, step, served = memory.get_finished_spans()
    assert (served.name, served.kind) == ("process mesh.agent.nlp.flow", SpanKind.SERVER)
    assert served.parent is not None and served.parent.is_remote
    assert f"{served.parent.span_id:016x}" == PARENT
    assert {f"{s.context.trace_id:032x}" for s in (send, step, served)} == {TRACE}
    assert (step.name, step.parent.span_id) == ("step summary", served.context.span_id)
    assert (send.name, send.kind) == ("send mesh.agent.nlp.x", SpanKind.CLIENT)
    assert send.parent.span_id == step.context.span_id
    assert served.attributes["mesh.code"] == "ok"
    # What went on the wire names the send span as the callee's parent.
    [carried] = sent
    ref = parse_traceparent(carried["traceparent"])
    assert ref is not None and (ref.trace_id, ref.span_id) == (TRACE, f"{send.context.span_id:016x}")
    assert carried["tracestate"] == "a=1"


def test_a_failed_request_and_step_set_error_with_the_code() -> None:
    spans, memory = recorder()

    async def handler() -> MeshError | None:
        try:
            with step_span("fetch") or _nothing():
                raise MeshError("timeout", "too slow")
        except MeshError:
            pass
        return MeshError("step_failed", "step 'fetch' failed")

    asyncio.run(spans.serve(handler(), None, "mesh.agent.p", "rid"))
    step, served = memory.get_finished_spans()
    assert (step.status.status_code, step.status.description) == (StatusCode.ERROR, "timeout")
    assert (served.status.status_code, served.status.description) == (StatusCode.ERROR,
                                                                      "step_failed")
    assert served.attributes["mesh.code"] == "step_failed"
    assert served.parent is None  # no traceparent: a new trace, rooted here


def test_unsampled_requests_make_no_span_and_carry_flags_00() -> None:
    spans, memory = recorder(ratio=0.0)
    assert not spans.sampled(None)
    assert not spans.sampled({"traceparent": f"00-{TRACE}-{PARENT}-00"})
    assert spans.sampled({"traceparent": f"00-{TRACE}-{PARENT}-01"})  # the caller's choice
    assert current() is None
    assert outgoing()["traceparent"].endswith("-00")
    assert memory.get_finished_spans() == ()


class _nothing:
    def __enter__(self) -> dict[str, str]:
        raise AssertionError("the request was sampled: a span was expected")

    def __exit__(self, *exc: object) -> None:
        pass


def test_the_mesh_encoder_writes_what_the_sdk_encoder_writes() -> None:
    records: list[Record] = []
    spans = Recorder(records.append, 1.0)

    async def handler() -> MeshError | None:
        with (step_span("é" * 80) or _nothing(),  # a long, non-ASCII name and attribute
              send_span("mesh.agent.x", "r" * 300) or _nothing()):
            pass
        return MeshError("timeout", "")

    asyncio.run(spans.serve(handler(), {"traceparent": f"00-{TRACE}-{PARENT}-01"},
                            "mesh.agent.p", "rid"))
    _, kind, trace_id, span_id, *_ = records[0]
    records.append(("other types", kind, trace_id, span_id, 0, False, 1, 2,
                    {"flag": True, "n": -3, "ratio": 0.5}, ""))
    ours, sdk = ExportTraceServiceRequest(), ExportTraceServiceRequest()
    ours.ParseFromString(encode(records, resource_block(RESOURCE.attributes)))
    sdk.ParseFromString(encode_spans([readable(r, RESOURCE) for r in records]).SerializeToString())
    for request in (ours, sdk):
        for span in request.resource_spans[0].scope_spans[0].spans:
            if not span.status.code and not span.status.message:
                span.ClearField("status")  # the SDK writes an empty one: the same
    assert ours == sdk
    assert len(ours.resource_spans[0].scope_spans[0].spans) == 4


class _nothing:
    def __enter__(self) -> dict[str, str]:
        raise AssertionError("the request was sampled: a span was expected")

    def __exit__(self, *exc: object) -> None:
        pass

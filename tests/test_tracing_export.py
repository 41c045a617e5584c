"""Spans end to end: `up` exports over OTLP/HTTP to a collector in the test (its protobuf
decoded), one trace across a pipeline, its steps, the agents they call and theirs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from tests.helpers import UpProcess, write_mesh
from tests.otlp_receiver import Receiver, Span

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "50"}  # a batch every 50 ms, not every 5 s

HANDLERS = '''
    from opentelemetry import trace  # a handler's own instrumentation

    TRACER = trace.get_tracer("handler")

    async def a(payload, ctx):
        return {"a": True, "b": await ctx.call("{u}.b", {})}

    async def b(payload):
        with TRACER.start_as_current_span("own work"):
            return {"b": True}

    async def boom(payload):
        raise ValueError("no luck")
'''

MESH = '''
    version: 1
    name: traced
    tracing: {endpoint: "ENDPOINT", sample: SAMPLE}
    agents:
      {u}.a: {handler: "{mod}:a"}
      {u}.b: {handler: "{mod}:b"}
      {u}.boom: {handler: "{mod}:boom"}
    pipelines:
      {u}.flow:
        steps:
          - id: first
            call: {u}.a
          - id: both
            parallel:
              x: {call: {u}.b}
              y: {call: {u}.b}
      {u}.broken:
        steps:
          - id: only
            call: {u}.boom
'''


def mesh_text(unique: str, endpoint: str, sample: float = 1.0) -> str:
    return (MESH.replace("{u}", f"t{unique}").replace("ENDPOINT", endpoint)
            .replace("SAMPLE", str(sample)))


async def call(url: str, subject: str, headers: dict[str, str] | None = None) -> bytes:
    nc = await nats.connect(url)
    try:
        reply = await nc.request(subject, b"{}", timeout=10, headers=headers)
        return reply.data
    finally:
        await nc.close()


def named(spans: list[Span], name: str) -> list[Span]:
    return [s for s in spans if s.name == name]


def one(spans: list[Span], name: str, parent: Span | None = None) -> Span:
    found = [s for s in named(spans, name) if parent is None or s.parent == parent.span_id]
    assert len(found) == 1, (name, [(s.name, s.parent) for s in spans])
    return found[0]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def test_one_trace_across_a_pipeline_its_steps_and_the_agents_they_call(
        nats_url: str, tmp_path: Path, unique: str, receiver: Receiver) -> None:
    u = f"t{unique}"
    path, _ = write_mesh(tmp_path, mesh_text(unique, receiver.endpoint),
                         HANDLERS.replace("{u}", u))
    with UpProcess(path, nats_url, "--no-reload", env=FAST_EXPORT) as up:
        data = asyncio.run(call(nats_url, f"mesh.agent.{u}.flow",
                                {"traceparent": TRACEPARENT, "X-Mesh-Request-Id": "run-1"}))
        assert data == b'{"x":{"b":true},"y":{"b":true}}'
        spans = receiver.wait(lambda spans: len(named(spans, "own work")) == 3
                              and len(named(spans, f"process mesh.agent.{u}.flow")) == 1)
    assert "tracing: spans to http://127.0.0.1" in up.log
    assert {s.trace_id for s in spans} == {CALLER_TRACE}
    assert not [s for s in spans if "INBOX" in s.name]  # reply inboxes never name a span
    assert {s.service for s in spans} == {"traced"}

    flow = one(spans, f"process mesh.agent.{u}.flow")
    assert (flow.kind, flow.parent) == ("server", CALLER_SPAN)
    assert flow.attributes == {
        "messaging.system": "nats", "messaging.operation.type": "process",
        "messaging.destination.name": f"mesh.agent.{u}.flow", "mesh.request_id": "run-1",
        "mesh.code": "ok"}
    first = one(spans, "step first", flow)
    assert first.kind == "internal"
    send_a = one(spans, f"send mesh.agent.{u}.a", first)
    assert send_a.kind == "client"
    assert send_a.attributes["messaging.destination.name"] == f"mesh.agent.{u}.a"
    served_a = one(spans, f"process mesh.agent.{u}.a", send_a)  # the callee's, its child
    assert served_a.kind == "server"
    inner = one(spans, f"send mesh.agent.{u}.b", served_a)  # a's own ctx.call
    # A handler's own spans nest under the request's span, in the same trace.
    served_b = one(spans, f"process mesh.agent.{u}.b", inner)
    own = one(spans, "own work", served_b)
    assert own.kind == "internal"
    both = one(spans, "step both", flow)
    for branch in ("x", "y"):
        step = one(spans, f"step both.{branch}", both)
        send = one(spans, f"send mesh.agent.{u}.b", step)
        one(spans, f"process mesh.agent.{u}.b", send)
    assert all(s.status != 2 for s in spans)


def test_a_failure_sets_the_span_status_to_error_with_the_code(
        nats_url: str, tmp_path: Path, unique: str, receiver: Receiver) -> None:
    u = f"t{unique}"
    path, _ = write_mesh(tmp_path, mesh_text(unique, receiver.endpoint),
                         HANDLERS.replace("{u}", u))
    with UpProcess(path, nats_url, "--no-reload", env=FAST_EXPORT) as up:
        asyncio.run(call(nats_url, f"mesh.agent.{u}.broken", {"traceparent": TRACEPARENT}))
        spans = receiver.wait(lambda spans: named(spans, f"process mesh.agent.{u}.broken"))
        line = up.wait_for(f"[{u}.boom] request")
    assert line.endswith(f"failed: handler_error: ValueError: no luck (trace {CALLER_TRACE})")
    boom = one(spans, f"process mesh.agent.{u}.boom")
    assert (boom.status, boom.message, boom.attributes["mesh.code"]) == (2, "handler_error",
                                                                         "handler_error")
    step = one(spans, "step only")
    assert (step.status, step.message) == (2, "handler_error")
    broken = one(spans, f"process mesh.agent.{u}.broken")
    assert (broken.status, broken.message) == (2, "step_failed")
    assert step.parent == broken.span_id


def test_a_new_trace_starts_without_a_traceparent_and_sample_zero_records_none(
        nats_url: str, tmp_path: Path, unique: str, receiver: Receiver) -> None:
    u = f"t{unique}"
    path, _ = write_mesh(tmp_path, mesh_text(unique, receiver.endpoint),
                         HANDLERS.replace("{u}", u))
    with UpProcess(path, nats_url, "--no-reload", env=FAST_EXPORT):
        asyncio.run(call(nats_url, f"mesh.agent.{u}.a"))
        spans = receiver.wait(lambda spans: named(spans, f"process mesh.agent.{u}.b")
                              and named(spans, f"process mesh.agent.{u}.a"))
    served = one(spans, f"process mesh.agent.{u}.a")
    assert served.parent == ""  # a root: the trace started here
    assert len({s.trace_id for s in spans}) == 1 and served.trace_id != CALLER_TRACE

    zero = tmp_path / "zero"
    zero.mkdir()
    path, _ = write_mesh(zero, mesh_text(unique + "z", receiver.endpoint, 0.0),
                         HANDLERS.replace("{u}", u + "z"))
    with UpProcess(path, nats_url, "--no-reload", env=FAST_EXPORT):
        before = len(receiver.spans)
        for _ in range(5):
            asyncio.run(call(nats_url, f"mesh.agent.{u}z.a"))
        # A caller's sampled traceparent is still followed.
        asyncio.run(call(nats_url, f"mesh.agent.{u}z.b", {"traceparent": TRACEPARENT}))
        spans = receiver.wait(lambda spans: named(spans, f"process mesh.agent.{u}z.b")
                              and named(spans, "own work")[len(named(spans[:before], "own work")):])
    assert sorted(s.name for s in spans[before:]) == ["own work", f"process mesh.agent.{u}z.b"]


def test_a_collector_that_is_down_never_affects_requests(
        nats_url: str, tmp_path: Path, unique: str) -> None:
    u = f"t{unique}"
    with Receiver() as gone:  # a port that was a collector's, now closed
        endpoint = gone.endpoint
    path, _ = write_mesh(tmp_path, mesh_text(unique, endpoint), HANDLERS.replace("{u}", u))
    env = {**FAST_EXPORT, "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    with UpProcess(path, nats_url, "--no-reload", env=env) as up:

        async def many() -> list[bytes]:
            nc = await nats.connect(nats_url)
            try:
                replies = await asyncio.gather(*(
                    nc.request(f"mesh.agent.{u}.flow", b"{}", timeout=10) for _ in range(200)))
                return [r.data for r in replies]
            finally:
                await nc.close()

        answers = asyncio.run(many())
        up.wait_for("took no spans; spans are dropped and counted", timeout=30)
        stopping = time.monotonic()
    assert all(a == b'{"x":{"b":true},"y":{"b":true}}' for a in answers)
    assert time.monotonic() - stopping < 10  # the last spans get at most 2 s
    assert "spans dropped" in up.log
    assert "Traceback" not in up.log


def test_each_worker_exports_its_own_spans_and_up_says_so_once(
        nats_url: str, tmp_path: Path, unique: str, receiver: Receiver) -> None:
    u = f"t{unique}"
    path, _ = write_mesh(tmp_path, mesh_text(unique, receiver.endpoint),
                         HANDLERS.replace("{u}", u))
    with UpProcess(path, nats_url, "--no-reload", "--workers", "2", env=FAST_EXPORT) as up:

        async def many() -> None:
            nc = await nats.connect(nats_url)
            try:
                await asyncio.gather(*(nc.request(f"mesh.agent.{u}.b", b"{}", timeout=10)
                                       for _ in range(200)))
            finally:
                await nc.close()

        asyncio.run(many())
        spans = receiver.wait(
            lambda spans: len(named(spans, f"process mesh.agent.{u}.b")) == 200)
    served = named(spans, f"process mesh.agent.{u}.b")
    assert len({s.extra["instance"] for s in served}) == 2  # both workers served and exported
    assert len([line for line in up.lines if "tracing: spans to" in line]) == 1

"""Trace context without a collector: `traceparent` on every hop, continued or started,
and hostile values (malformed, oversized) that never fail a request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from runtime.tracing import adopt, current_trace_id, outgoing
from runtime.tracing.settings import TracingSettings, resolve
from runtime.tracing.w3c import clean_tracestate, parse_traceparent
from tests.helpers import ROOT, UpProcess, cli, write_mesh

P = "trc"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"

HANDLERS = f'''
    async def first(payload, ctx):
        return await ctx.call("{P}.second", payload)

    async def second(payload, ctx):
        return await ctx.call("{P}.raw", payload)  # a raw subscriber: what the wire carried

    async def fan(payload, ctx):
        await ctx.state.put("{P}-key", {{"n": 1}})
        return {{"answers": await ctx.broadcast("{P}.cap", {{}}, within=0.5)}}

    async def boom(payload):
        raise ValueError("no luck")
'''

MESH = f'''
    version: 1
    name: trc
    agents:
      {P}.first: {{handler: "{{mod}}:first"}}
      {P}.second: {{handler: "{{mod}}:second"}}
      {P}.fan: {{handler: "{{mod}}:fan"}}
      {P}.boom: {{handler: "{{mod}}:boom"}}
    external:
      {P}.raw: {{description: a raw nats-py subscriber of the test}}
    pipelines:
      {P}.flow:
        steps:
          - id: hop
            call: {P}.raw
'''


@pytest.fixture(scope="module")
def up(nats_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    folder = tmp_path_factory.mktemp("tracing")
    path, _ = write_mesh(folder, MESH, HANDLERS)
    with UpProcess(path, nats_server.url, "--no-reload") as process:
        yield process


@pytest.fixture
async def seen(nc: Client) -> AsyncIterator[list[dict[str, str]]]:
    """The headers each message to `{P}.raw` (and broadcasts to `{P}.cap`) carried."""
    found: list[dict[str, str]] = []

    async def echo(msg: Msg) -> None:
        found.append(dict(msg.headers or {}))
        await nc.publish(msg.reply, json.dumps(dict(msg.headers or {})).encode(),
                         headers={"X-Mesh-Status": "ok", "X-Mesh-Source": f"{P}.raw"})

    subs = [await nc.subscribe(f"mesh.agent.{P}.raw", cb=echo),
            await nc.subscribe(f"mesh.broadcast.{P}.cap", cb=echo)]
    await nc.flush()
    yield found
    for sub in subs:
        await sub.unsubscribe()


async def ask(nc: Client, name: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    reply = await nc.request(f"mesh.agent.{name}", b"{}", timeout=10, headers=headers)
    assert reply.headers and reply.headers.get("X-Mesh-Status") == "ok", reply.data
    result: dict[str, Any] = json.loads(reply.data)
    return result


async def test_a_callers_traceparent_is_continued_across_two_hops(
        nc: Client, seen: list[dict[str, str]]) -> None:
    carried = await ask(nc, f"{P}.first", {"traceparent": TRACEPARENT,
                                           "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa"})
    ref = parse_traceparent(carried["traceparent"])
    assert ref is not None
    assert ref.trace_id == CALLER_TRACE  # the caller's trace, two hops on
    assert ref.span_id != CALLER_SPAN  # each hop is a span of its own
    assert ref.sampled
    assert carried["tracestate"] == "congo=t61rcWkgMzE,rojo=00f067aa"


async def test_without_a_traceparent_a_new_trace_starts_and_flows_on(
        nc: Client, seen: list[dict[str, str]]) -> None:
    first, second = await ask(nc, f"{P}.first"), await ask(nc, f"{P}.first")
    a, b = parse_traceparent(first["traceparent"]), parse_traceparent(second["traceparent"])
    assert a is not None and b is not None
    assert a.trace_id != b.trace_id  # a trace per request
    assert "tracestate" not in first


async def test_a_pipeline_step_carries_the_runs_trace(
        nc: Client, seen: list[dict[str, str]]) -> None:
    carried = await ask(nc, f"{P}.flow", {"traceparent": TRACEPARENT})
    ref = parse_traceparent(carried["traceparent"])
    assert ref is not None and ref.trace_id == CALLER_TRACE
    fresh = parse_traceparent((await ask(nc, f"{P}.flow"))["traceparent"])
    assert fresh is not None and fresh.trace_id != CALLER_TRACE  # started by the run


@pytest.mark.parametrize("hostile", [
    "garbage",
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case is not allowed
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # a forbidden version
    f"{TRACEPARENT}-extra",  # version 00 has four fields
    TRACEPARENT + "\u00e9" * 5000,
])
async def test_a_malformed_traceparent_starts_a_new_trace_and_never_fails(
        nc: Client, seen: list[dict[str, str]], hostile: str) -> None:
    carried = await ask(nc, f"{P}.first", {"traceparent": hostile,
                                           "tracestate": "congo=t61rcWkgMzE"})
    ref = parse_traceparent(carried["traceparent"])
    assert ref is not None and ref.trace_id != CALLER_TRACE
    assert not ref.sampled
    assert "tracestate" not in carried  # it belonged to the trace that was dropped


@pytest.mark.parametrize("state", [
    "congo=" + "a" * 600,  # over 512 characters
    ",".join(f"k{i}=v" for i in range(33)),  # over 32 members
    "no spaces=allowed",
    "UPPER=case",
])
async def test_an_oversized_or_malformed_tracestate_is_dropped(
        nc: Client, seen: list[dict[str, str]], state: str) -> None:
    carried = await ask(nc, f"{P}.first", {"traceparent": TRACEPARENT, "tracestate": state})
    ref = parse_traceparent(carried["traceparent"])
    assert ref is not None and ref.trace_id == CALLER_TRACE  # the trace itself goes on
    assert "tracestate" not in carried


async def test_broadcasts_and_state_writes_carry_the_trace(
        nc: Client, seen: list[dict[str, str]]) -> None:
    result = await ask(nc, f"{P}.fan", {"traceparent": TRACEPARENT})
    [answer] = result["answers"]
    assert answer["status"] == "ok"
    ref = parse_traceparent(answer["result"]["traceparent"])
    assert ref is not None and ref.trace_id == CALLER_TRACE
    stored = await nc.jetstream().get_last_msg("KV_mesh-context", f"$KV.mesh-context.{P}-key")
    written = parse_traceparent((stored.headers or {}).get("traceparent"))
    assert written is not None and written.trace_id == CALLER_TRACE


async def test_the_failed_request_line_names_the_trace(nc: Client, up: UpProcess) -> None:
    start = len(up.lines)
    errors = await nc.subscribe(f"mesh.errors.{P}.boom")
    reply = await nc.request(f"mesh.agent.{P}.boom", b"{}", timeout=10,
                             headers={"traceparent": TRACEPARENT})
    assert reply.headers and reply.headers["X-Mesh-Status"] == "error"
    line = up.wait_for(f"[{P}.boom] request", start=start)
    assert line.endswith(f"failed: handler_error: ValueError: no luck (trace {CALLER_TRACE})")
    published = await errors.next_msg(timeout=10)  # what the web page's errors list reads
    assert (published.headers or {}).get("traceparent") == TRACEPARENT
    await errors.unsubscribe()


def test_a_configured_collector_without_the_extra_says_how_to_install_it(
        nats_url: str, tmp_path: Path) -> None:
    shim = tmp_path / "shim" / "opentelemetry" / "sdk"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'opentelemetry.sdk'\", "
        "name='opentelemetry.sdk')\n")
    folder = tmp_path / "mesh"
    folder.mkdir()
    path, _ = write_mesh(folder, f'''
        version: 1
        name: noextra
        agents:
          {P}x.first: {{handler: "{{mod}}:first"}}
    ''', HANDLERS)
    env = {"PYTHONPATH": f"{tmp_path / 'shim'}:{ROOT}",
           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    with UpProcess(path, nats_url, "--no-reload", env=env) as up:
        line = up.wait_for("tracing is configured")
    assert "(OTEL_EXPORTER_OTLP_ENDPOINT)" in line
    assert 'pip install "mesh-runtime[otel]"' in line
    assert "trace context still flows" in line


def test_a_bad_collector_url_in_mesh_yaml_is_a_clear_error(tmp_path: Path) -> None:
    path, _ = write_mesh(tmp_path, '''
        version: 1
        tracing: {endpoint: "collector:4318", sample: 2}
    ''')
    result = cli("validate", "-f", str(path))
    assert result.returncode == 1
    assert "tracing.endpoint" in result.stdout + result.stderr
    assert "not an http(s) URL: 'collector:4318'" in result.stdout + result.stderr
    assert "tracing.sample" in result.stdout + result.stderr


@pytest.mark.parametrize("value", [None, 7, "", "00-" + "a" * 32, "x" * 10_000])
def test_parse_traceparent_takes_anything_and_never_raises(value: object) -> None:
    assert parse_traceparent(value) is None


def test_a_future_version_may_append_fields() -> None:
    ref = parse_traceparent(f"01-{CALLER_TRACE}-{CALLER_SPAN}-00-what-comes-next")
    assert ref is not None and (ref.trace_id, ref.sampled) == (CALLER_TRACE, False)
    assert clean_tracestate(" a=1 , ,b@c=2 ") == "a=1,b@c=2"


def test_the_environment_wins_over_the_file_and_bad_values_are_said() -> None:
    spec = TracingSettings(endpoint="http://collector:4318", sample=0.5)
    assert resolve(None, {}) is None  # nothing configured: no export
    assert resolve(spec, {"OTEL_SDK_DISABLED": "true"}) is None
    from_file = resolve(spec, {})
    assert from_file is not None
    assert (from_file.traces_url, from_file.sample) == ("http://collector:4318/v1/traces", 0.5)
    env = resolve(spec, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318/",
                         "OTEL_TRACES_SAMPLER_ARG": "0.25", "OTEL_SERVICE_NAME": "shop"})
    assert env is not None
    assert (env.traces_url, env.sample, env.service_name) == (
        "http://other:4318/v1/traces", 0.25, "shop")
    full = resolve(None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://u:p@x/in/traces"})
    assert full is not None and full.traces_url == "https://u:p@x/in/traces"
    assert full.shown_endpoint == "https://x/in/traces"  # no password in a log line
    bad = resolve(spec, {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector", "OTEL_TRACES_SAMPLER_ARG": "7"})
    assert bad is not None and (bad.traces_url, bad.sample) == ("http://collector:4318/v1/traces", 0.5)
    assert bad.problems == (
        "OTEL_EXPORTER_OTLP_ENDPOINT ignored: not an http(s) URL: 'collector' "
        "(like http://collector:4318)",
        "OTEL_TRACES_SAMPLER_ARG ignored: '7' is not a number from 0 to 1")


def test_a_resumed_run_can_adopt_its_trace() -> None:
    async def resumed() -> tuple[str | None, str]:
        assert adopt("not-a-trace") is None
        adopt(CALLER_TRACE)
        return current_trace_id(), outgoing()["traceparent"]

    trace_id, sent = asyncio.run(resumed())
    assert trace_id == CALLER_TRACE and sent.startswith(f"00-{CALLER_TRACE}-")

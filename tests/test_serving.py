"""Serving agents over a real nats-server, through a real `mesh-runtime up` process."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from runtime.core.protocol import MeshError
from runtime.nats.caller import call_agent
from tests.helpers import UpProcess, cli, write_mesh

HANDLERS = '''
    import asyncio
    import threading
    import time
    from pydantic import BaseModel

    STATE = {"in_flight": 0, "max_in_flight": 0, "cancelled": 0}

    def sync_upper(payload):
        return {"text": payload["text"].upper(), "thread": threading.current_thread().name}

    async def async_echo(payload):
        return payload

    class Point(BaseModel):
        x: int
        y: int = 0

    class Sum(BaseModel):
        total: int

    async def add(point: Point) -> Sum:
        return Sum(total=point.x + point.y)

    async def count(payload):
        for i in range(payload["n"]):
            yield {"i": i}

    async def with_ctx(payload, ctx):
        return {"request_id": ctx.request_id, "agent": ctx.agent, "config": dict(ctx.config),
                "left": ctx.remaining() > 0, "logger": ctx.logger.name}

    async def relay(payload, ctx):
        return await ctx.call("{prefix}.echo", {"via": ctx.agent, "text": payload["text"]})

    def broken(payload):
        raise ValueError("the handler broke")

    async def bad_output(payload):
        return {"wrong": True}

    async def slow(payload):
        STATE["in_flight"] += 1
        STATE["max_in_flight"] = max(STATE["max_in_flight"], STATE["in_flight"])
        try:
            await asyncio.sleep(payload.get("seconds", 0.3))
        except asyncio.CancelledError:
            STATE["cancelled"] += 1
            raise
        finally:
            STATE["in_flight"] -= 1
        return {"slept": payload.get("seconds", 0.3)}

    async def stubborn(payload):
        # Ignores cancellation, as a handler stuck in uninterruptible work would.
        STATE["in_flight"] += 1
        end = time.monotonic() + payload["seconds"]
        while time.monotonic() < end:
            try:
                await asyncio.sleep(end - time.monotonic())
            except asyncio.CancelledError:
                continue
        STATE["in_flight"] -= 1
        return {}

    async def stats(payload):
        return dict(STATE)

    async def reset(payload):
        STATE.update(in_flight=0, max_in_flight=0, cancelled=0)
        return {}

    def defaults(payload):
        return payload
'''

MESH = """
    version: 1
    name: serving-test
    defaults: {timeout: 5s}
    agents:
      {prefix}.upper:
        description: Upper-cases text in a thread.
        handler: {mod}:sync_upper
        input: {type: object, properties: {text: {type: string}}, required: [text]}
        tags: [text]
        version: 2.1.0
      {prefix}.echo:
        handler: {mod}:async_echo
      {prefix}.add:
        description: Adds a pydantic point.
        handler: {mod}:add
      {prefix}.count:
        description: Streams numbers.
        handler: {mod}:count
        input: {type: object, properties: {n: {type: integer}}, required: [n]}
        output: {type: object, properties: {i: {type: integer}}, required: [i]}
      {prefix}.ctx:
        handler: {mod}:with_ctx
        config: {style: short}
      {prefix}.relay:
        handler: {mod}:relay
      {prefix}.broken:
        handler: {mod}:broken
      {prefix}.bad-output:
        handler: {mod}:bad_output
        output: {type: object, properties: {ok: {type: boolean}}, required: [ok]}
      {prefix}.slow:
        handler: {mod}:slow
        timeout: 1s
        concurrency: 2
      {prefix}.stubborn:
        handler: {mod}:stubborn
        timeout: 1s
        concurrency: 2
      {prefix}.stats:
        handler: {mod}:stats
      {prefix}.reset:
        handler: {mod}:reset
      {prefix}.defaults:
        handler: {mod}:defaults
        input:
          type: object
          properties:
            text: {type: string}
            limit: {type: integer, default: 10}
            options:
              type: object
              properties: {deep: {type: boolean, default: true}}
          required: [text]
"""

PREFIX = f"t{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def up(nats_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    folder = tmp_path_factory.mktemp("serving")
    path, _ = write_mesh(folder, MESH.replace("{prefix}", PREFIX),
                         HANDLERS.replace("{prefix}", PREFIX))
    with UpProcess(path, nats_server.url, "--no-reload") as process:
        yield process



def name(short: str) -> str:
    return f"{PREFIX}.{short}"


async def call(nc: Client, short: str, payload: Any = None, timeout: float = 5) -> Any:
    return await call_agent(nc, name(short), {} if payload is None else payload, timeout)


async def call_error(nc: Client, short: str, payload: Any = None, timeout: float = 5) -> MeshError:
    with pytest.raises(MeshError) as caught:
        await call(nc, short, payload, timeout)
    return caught.value


def test_ready_line_counts_what_is_served(up: UpProcess, nats_url: str) -> None:
    assert up.wait_for("ready:") == f"ready: 13 agents, 0 pipelines on {nats_url}"


async def test_sync_handler_runs_in_a_thread(nc: Client) -> None:
    reply = await call(nc, "upper", {"text": "hi"})
    assert reply["text"] == "HI"
    assert reply["thread"].startswith("mesh-handler")


async def test_reply_headers(nc: Client) -> None:
    msg = await nc.request(f"mesh.agent.{name('echo')}", b'{"a": 1}', timeout=5,
                           headers={"X-Mesh-Request-Id": "rid-123"})
    assert json.loads(msg.data) == {"a": 1}
    assert msg.headers == {"X-Mesh-Status": "ok", "X-Mesh-Request-Id": "rid-123",
                           "X-Mesh-Source": name("echo")}


async def test_request_id_is_made_when_absent(nc: Client) -> None:
    msg = await nc.request(f"mesh.agent.{name('echo')}", b"{}", timeout=5)
    assert msg.headers is not None and len(msg.headers["X-Mesh-Request-Id"]) == 32


async def test_empty_body_means_empty_object(nc: Client) -> None:
    msg = await nc.request(f"mesh.agent.{name('echo')}", b"", timeout=5)
    assert json.loads(msg.data) == {}


async def test_pydantic_model_in_and_out(nc: Client) -> None:
    assert await call(nc, "add", {"x": 2, "y": 3}) == {"total": 5}
    error = await call_error(nc, "add", {"x": "two"})
    assert error.code == "invalid_input"
    assert error.details["errors"][0]["path"] == "/x"


async def test_streaming_agent_sends_ordered_chunks_then_end(nc: Client) -> None:
    request_id = uuid.uuid4().hex
    chunks: asyncio.Queue[Any] = asyncio.Queue()
    sub = await nc.subscribe(f"mesh.stream.{request_id}", cb=chunks.put)
    await nc.publish(f"mesh.agent.{name('count')}", b'{"n": 3}',
                     headers={"X-Mesh-Request-Id": request_id, "X-Mesh-Stream": "true"})
    received = [await asyncio.wait_for(chunks.get(), 5) for _ in range(4)]
    await sub.unsubscribe()
    assert [json.loads(m.data) for m in received[:3]] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert [m.headers["X-Mesh-Stream-Seq"] for m in received] == ["0", "1", "2", "3"]
    assert received[3].headers["X-Mesh-Stream-End"] == "true" and received[3].data == b""


async def test_calling_a_streaming_agent_is_a_mismatch(nc: Client) -> None:
    error = await call_error(nc, "count", {"n": 1})
    assert error.code == "invocation_mismatch"
    assert "streaming-only" in error.message


async def test_context(nc: Client) -> None:
    msg = await nc.request(f"mesh.agent.{name('ctx')}", b"{}", timeout=5,
                           headers={"X-Mesh-Request-Id": "ctx-1"})
    assert json.loads(msg.data) == {"request_id": "ctx-1", "agent": name("ctx"),
                                    "config": {"style": "short"}, "left": True,
                                    "logger": f"mesh-runtime.agent.{name('ctx')}"}


async def test_context_call_reaches_another_agent(nc: Client) -> None:
    assert await call(nc, "relay", {"text": "x"}) == {"via": name("relay"), "text": "x"}


async def test_input_defaults_are_filled_before_the_handler(nc: Client) -> None:
    reply = await call(nc, "defaults", {"text": "a", "options": {}})
    assert reply == {"text": "a", "limit": 10, "options": {"deep": True}}


async def test_invalid_input_lists_every_error(nc: Client) -> None:
    error = await call_error(nc, "upper", {"text": 5})
    assert error.code == "invalid_input"
    assert error.agent == name("upper")
    assert error.details == {"errors": [{"path": "/text",
                                         "message": '5 is not of type "string"'}]}


async def test_body_that_is_not_json(nc: Client) -> None:
    msg = await nc.request(f"mesh.agent.{name('echo')}", b"not json", timeout=5)
    body = json.loads(msg.data)
    assert msg.headers is not None and msg.headers["X-Mesh-Status"] == "error"
    assert body["code"] == "invalid_input"
    assert body["message"].startswith("request body is not JSON")
    assert set(body) == {"code", "message", "agent", "request_id", "details"}


async def test_handler_error_is_an_answer_and_published(nc: Client) -> None:
    errors: asyncio.Queue[Any] = asyncio.Queue()
    sub = await nc.subscribe(f"mesh.errors.{name('broken')}", cb=errors.put)
    error = await call_error(nc, "broken")
    published = json.loads((await asyncio.wait_for(errors.get(), 5)).data)
    await sub.unsubscribe()
    assert error.code == "handler_error"
    assert error.message == "ValueError: the handler broke"
    assert published["code"] == "handler_error"
    assert published["request_id"] == error.request_id
    assert await call(nc, "echo", {"still": "alive"}) == {"still": "alive"}


async def test_invalid_output(nc: Client) -> None:
    error = await call_error(nc, "bad-output")
    assert error.code == "invalid_output"
    assert error.details["errors"] == [{"path": "/ok", "message": '"ok" is a required property'}]


async def test_timeout_cancels_the_handler(nc: Client) -> None:
    await call(nc, "reset")
    started = time.monotonic()
    error = await call_error(nc, "slow", {"seconds": 3})
    assert error.code == "timeout"
    assert time.monotonic() - started < 2.5
    assert (await call(nc, "stats"))["cancelled"] == 1


async def test_concurrency_limit_makes_excess_wait(nc: Client) -> None:
    await call(nc, "reset")
    replies = await asyncio.gather(*(call(nc, "slow", {"seconds": 0.2}) for _ in range(6)))
    assert replies == [{"slept": 0.2}] * 6
    assert (await call(nc, "stats"))["max_in_flight"] == 2


async def test_waiting_past_the_deadline_is_overloaded(nc: Client) -> None:
    await call(nc, "reset")
    holders = [asyncio.ensure_future(call(nc, "stubborn", {"seconds": 1.6})) for _ in range(2)]
    for _ in range(100):  # bounded: until both holders run
        if (await call(nc, "stats"))["in_flight"] == 2:
            break
        await asyncio.sleep(0.02)
    waiters = await asyncio.gather(*(call(nc, "stubborn", {"seconds": 0.1}) for _ in range(2)),
                                   return_exceptions=True)
    await asyncio.gather(*holders, return_exceptions=True)
    assert [w.code if isinstance(w, MeshError) else "ok" for w in waiters] == ["overloaded"] * 2
    assert "concurrency limit (2)" in str(waiters[0])


def test_cli_call_prints_the_reply(up: UpProcess, nats_url: str) -> None:
    result = cli("call", name("upper"), '{"text": "cli"}', "--nats", nats_url)
    assert result.returncode == 0
    assert json.loads(result.stdout)["text"] == "CLI"


def test_cli_call_prints_a_structured_error_and_fails(up: UpProcess, nats_url: str) -> None:
    result = cli("call", name("upper"), '{"text": 1}', "--nats", nats_url)
    assert result.returncode == 1
    assert json.loads(result.stderr)["code"] == "invalid_input"


def test_cli_call_reads_stdin_and_streams(up: UpProcess, nats_url: str) -> None:
    result = cli("call", name("count"), "-", "--nats", nats_url, input='{"n": 2}')
    assert result.returncode == 0
    assert result.stdout.splitlines() == ['{"i": 0}', '{"i": 1}']


def test_cli_call_unknown_agent(up: UpProcess, nats_url: str) -> None:
    result = cli("call", "no.such.agent", "--nats", nats_url)
    assert result.returncode == 1
    assert json.loads(result.stderr)["code"] == "not_found"


def test_cli_stream_to_nobody_is_not_found_at_once(up: UpProcess, nats_url: str) -> None:
    started = time.monotonic()
    result = cli("call", "no.such.stream", "{}", "--stream", "--timeout", "20s", "--nats", nats_url)
    assert result.returncode == 1
    assert json.loads(result.stderr)["code"] == "not_found"
    assert time.monotonic() - started < 10  # the server's 503, not the 20 s timeout


def test_cli_ls_shows_the_catalog(up: UpProcess, nats_url: str) -> None:
    result = cli("ls", "--nats", nats_url, "--json")
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    assert len(entries[name("upper")].pop("x-instances")) == 1  # one `up` serves it
    schema, _, writer = entries[name("upper")].pop("x-definition").partition("@")
    assert (len(schema), len(writer)) == (12, 12)  # whose definition the entry shows
    assert entries[name("upper")] == {
        "name": name("upper"), "description": "Upper-cases text in a thread.",
        "version": "2.1.0", "tags": ["text"], "invocable": True, "streaming": False}
    assert entries[name("count")]["streaming"] is True
    table = cli("ls", "--nats", nats_url).stdout
    assert any(line.startswith(name("count")) and " stream " in line for line in table.splitlines())


def test_cli_without_a_server_says_what_to_do(tmp_path: Path) -> None:
    result = cli("ls", "--nats", "nats://127.0.0.1:1")
    assert result.returncode == 2
    assert "cannot reach NATS at nats://127.0.0.1:1" in result.stderr
    assert "mesh-runtime up" in result.stderr

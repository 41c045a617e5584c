"""Hostile traffic on the wire against a real `up`: sizes, request ids, `$` replies, handlers.

Each test sends what an attacker with plain NATS access (or a careless handler) could, and
then checks that `up` answered with a structured error and still serves.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.core.protocol import MeshError
from runtime.nats.caller import call_agent
from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, write_mesh
from tests.raw_nats import RawNats

HANDLERS = '''
    import asyncio

    RAISED = {
        "SystemExit": lambda: SystemExit(3),
        "KeyboardInterrupt": lambda: KeyboardInterrupt(),
        "GeneratorExit": lambda: GeneratorExit("closing"),
        "CancelledError": lambda: asyncio.CancelledError("not the runtime's"),
        "ValueError": lambda: ValueError("line one\\nforged: ready: 0 agents"),
    }

    async def echo(payload):
        return payload

    def sync_raise(payload):
        raise RAISED[payload["kind"]]()

    async def async_raise(payload):
        await asyncio.sleep(0)
        raise RAISED[payload["kind"]]()

    async def stream_raise(payload):
        yield {"i": 0}
        raise RAISED[payload["kind"]]()

    def chatty(payload, ctx):
        ctx.logger.warning("user said: %s", payload["text"])
        return {}

    async def count(payload):
        for i in range(payload.get("n", 2)):
            yield {"i": i}

    async def big_chunks(payload):
        yield {"i": 0}
        yield {"blob": "x" * payload["size"]}
'''

MESH = """
    version: 1
    name: hardening-test
    defaults: {timeout: 5s}
    agents:
      w.echo:
        handler: {mod}:echo
      w.typed:
        handler: {mod}:echo
        input: {type: object, properties: {n: {type: integer}}, required: [n]}
      w.many:
        handler: {mod}:echo
        input:
          type: object
          properties: {PROPS}
      w.sync-raise:
        handler: {mod}:sync_raise
      w.async-raise:
        handler: {mod}:async_raise
      w.log-raise:
        handler: {mod}:sync_raise
      w.stream-raise:
        handler: {mod}:stream_raise
      w.count:
        handler: {mod}:count
      w.chatty:
        handler: {mod}:chatty
      w.big-chunks:
        handler: {mod}:big_chunks
"""
PROPS = "{" + ", ".join(f"p{i}: {{type: integer}}" for i in range(25)) + "}"


@pytest.fixture(scope="module")
def server() -> Iterator[NatsServer]:
    with NatsServer() as own:  # its own server: these tests look at the catalog
        yield own


@pytest.fixture(scope="module")
def up(server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    folder = tmp_path_factory.mktemp("hardening")
    path, _ = write_mesh(folder, MESH.replace("{PROPS}", PROPS), HANDLERS)
    with UpProcess(path, server.url, "--no-reload") as process:
        yield process


@pytest.fixture
async def nc(up: UpProcess, server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(server.url)
    yield client
    await client.close()


async def still_serves(nc: Client, up: UpProcess) -> None:
    marker = uuid.uuid4().hex
    assert await call_agent(nc, "w.echo", {"still": marker}, 5) == {"still": marker}
    assert up.process.poll() is None


async def request(nc: Client, name: str, body: bytes, headers: dict[str, str],
                  timeout: float = 5) -> Any:
    return await nc.request(p.agent_subject(name), body, headers=headers, timeout=timeout)


# 1. Nothing the runtime publishes exceeds max_payload.

async def test_an_echo_too_big_for_max_payload_is_invalid_output(nc: Client, up: UpProcess) -> None:
    limit = nc.max_payload
    body = json.dumps({"blob": "x" * (limit - 40)}).encode()
    assert len(body) <= limit  # the request itself fits; the reply with its headers would not
    reply = await request(nc, "w.echo", body, {})
    error = MeshError.from_body(reply.data)
    assert reply.headers[p.HDR_STATUS] == "error"
    assert error.code == p.INVALID_OUTPUT
    size = error.details["size"]
    assert size > limit and error.details["max_payload"] == limit
    assert error.message == (f"the output is {size} bytes with headers, over the NATS "
                             f"server's max_payload of {limit} bytes")
    await still_serves(nc, up)


async def test_a_stream_chunk_too_big_ends_the_stream_with_invalid_output(
        nc: Client, up: UpProcess) -> None:
    request_id = uuid.uuid4().hex
    sub = await nc.subscribe(p.stream_subject(request_id))
    await nc.publish(p.agent_subject("w.big-chunks"), json.dumps({"size": nc.max_payload}).encode(),
                     headers={p.HDR_REQUEST_ID: request_id, p.HDR_STREAM: "true"})
    first = await sub.next_msg(5)
    last = await sub.next_msg(5)
    assert json.loads(first.data) == {"i": 0}
    assert last.headers[p.HDR_STATUS] == "error"
    assert last.headers[p.HDR_STREAM_END] == "true"
    assert MeshError.from_body(last.data).code == p.INVALID_OUTPUT
    await still_serves(nc, up)


async def test_an_invalid_input_error_never_repeats_a_huge_value(nc: Client, up: UpProcess) -> None:
    body = json.dumps({"n": "y" * (nc.max_payload - 200)}).encode()
    reply = await request(nc, "w.typed", body, {})
    error = MeshError.from_body(reply.data)
    assert error.code == p.INVALID_INPUT
    assert len(reply.data) < 5000
    assert error.message.startswith('input does not match the schema: /n: "yyyy')
    assert error.message.endswith(" more characters)")
    assert error.details["errors"][0]["path"] == "/n"
    await still_serves(nc, up)


async def test_at_most_20_validation_errors_are_listed_with_their_count(nc: Client) -> None:
    payload = {f"p{i}": "not a number" for i in range(25)}
    with pytest.raises(MeshError) as caught:
        await call_agent(nc, "w.many", payload, 5)
    assert caught.value.code == p.INVALID_INPUT
    assert len(caught.value.details["errors"]) == 20
    assert caught.value.details["error_count"] == 25
    assert caught.value.message.endswith("(and 24 more)")


# 7. Numbers are kept exactly; nesting is bounded.

@pytest.mark.parametrize("number", [2**64, 2**64 + 1, 2**70 + 3, -(2**63) - 1, 10**40 + 1])
async def test_an_integer_past_64_bits_is_kept_exactly(nc: Client, number: int) -> None:
    reply = await request(nc, "w.typed", b'{"n": %d}' % number, {})
    assert reply.headers[p.HDR_STATUS] == "ok"
    assert reply.data == b'{"n":%d}' % number  # an int, every digit, never a float


async def test_an_integer_too_long_to_read_is_invalid_input(nc: Client, up: UpProcess) -> None:
    reply = await request(nc, "w.echo", b'{"n": %s}' % (b"7" * 5000), {})
    error = MeshError.from_body(reply.data)
    assert error.code == p.INVALID_INPUT
    assert error.message.startswith("request body is not JSON: Exceeds the limit (4300 digits)")
    await still_serves(nc, up)


@pytest.mark.parametrize("depth", [255, 1000, 5000])
async def test_a_payload_nested_too_deep_is_invalid_input(
        nc: Client, up: UpProcess, depth: int) -> None:
    reply = await request(nc, "w.echo", b"[" * depth + b"]" * depth, {})
    error = MeshError.from_body(reply.data)
    assert error.code == p.INVALID_INPUT
    assert error.message == "request body is nested more than 254 levels deep"
    await still_serves(nc, up)


async def test_a_payload_nested_254_deep_is_served(nc: Client) -> None:
    body = b"[" * 254 + b"]" * 254
    reply = await request(nc, "w.echo", body, {})
    assert reply.headers[p.HDR_STATUS] == "ok" and reply.data == body


# 3. Request ids.

BAD_IDS = ["a b", "a  b", "x" * 129, "mesh.agent.w", "*", ">"]


@pytest.mark.parametrize("bad", BAD_IDS, ids=["space", "two-spaces", "129", "dots", "star", "gt"])
async def test_a_bad_request_id_is_invalid_input_with_an_id_of_ours(
        nc: Client, up: UpProcess, bad: str) -> None:
    reply = await request(nc, "w.echo", b"{}", {p.HDR_REQUEST_ID: bad})
    error = MeshError.from_body(reply.data)
    assert error.code == p.INVALID_INPUT
    assert error.message == ("X-Mesh-Request-Id must be 1 to 128 characters of A-Z, a-z, 0-9, "
                             f"_ and -; this one has {len(bad)} characters")
    fresh = reply.headers[p.HDR_REQUEST_ID]
    assert fresh != bad and error.request_id == fresh and len(fresh) == 32
    await still_serves(nc, up)


@pytest.mark.parametrize("bad", BAD_IDS, ids=["space", "two-spaces", "129", "dots", "star", "gt"])
async def test_a_bad_request_id_on_a_stream_is_answered_on_the_reply_subject(
        nc: Client, up: UpProcess, bad: str) -> None:
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(p.agent_subject("w.count"), b"{}", reply=inbox,
                     headers={p.HDR_REQUEST_ID: bad, p.HDR_STREAM: "true"})
    reply = await sub.next_msg(5)
    assert reply.headers[p.HDR_STATUS] == "error"
    assert MeshError.from_body(reply.data).code == p.INVALID_INPUT
    await still_serves(nc, up)


@pytest.mark.parametrize("agent,stream", [("w.echo", False), ("w.count", True)])
def test_a_newline_in_the_request_id_sent_raw(up: UpProcess, server: NatsServer,
                                              agent: str, stream: bool) -> None:
    raw = RawNats(server.url)
    try:
        raw.sub("raw.inbox")
        lines = b"X-Mesh-Request-Id: a\nforged: line b"
        if stream:
            lines += b"\r\nX-Mesh-Stream: true"
        raw.hpub(p.agent_subject(agent), "raw.inbox", lines, b"{}")
        reply = raw.next_msg()
    finally:
        raw.close()
    assert reply.header(p.HDR_STATUS) == "error"
    assert json.loads(reply.body)["code"] == p.INVALID_INPUT
    assert "forged" not in up.log
    assert up.process.poll() is None


# 4. Confused deputy: replies to `$` subjects.

async def test_a_reply_subject_starting_with_dollar_is_never_published_to(
        nc: Client, up: UpProcess) -> None:
    js = nc.jetstream()
    catalog = await js.key_value(p.CATALOG_BUCKET)
    before = await catalog.get(p.CATALOG_KEY)
    start = len(up.lines)
    for reply in ("$KV.mesh-catalog.catalog", "$JS.API.STREAM.DELETE.KV_mesh-registry",
                  "$SYS.REQ.SERVER.PING"):
        await nc.publish(p.agent_subject("w.echo"), b"[]", reply=reply)
    await still_serves(nc, up)  # the same connection and agent: the $ requests came first
    after = await catalog.get(p.CATALOG_KEY)
    assert after.revision == before.revision
    assert "w.echo" in {e["name"] for e in json.loads(after.value)}
    await js.key_value(p.REGISTRY_BUCKET)  # still there
    line = up.wait_for("dropped", start=start)
    assert line.startswith("warning: dropped 1 request(s) whose reply subject starts with '$'")
    assert line.endswith("latest: w.echo, reply $KV.mesh-catalog.catalog; 1 in all")


# 6. Whatever a handler raises is an answer, and the process lives.

KINDS = ["SystemExit", "KeyboardInterrupt", "GeneratorExit", "CancelledError"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("agent", ["w.sync-raise", "w.async-raise"])
async def test_a_handler_raising_anything_is_handler_error(
        nc: Client, up: UpProcess, agent: str, kind: str) -> None:
    with pytest.raises(MeshError) as caught:
        await call_agent(nc, agent, {"kind": kind}, 5)
    assert caught.value.code == p.HANDLER_ERROR
    assert caught.value.message.startswith(f"{kind}")
    await still_serves(nc, up)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_streaming_handler_raising_anything_ends_with_handler_error(
        nc: Client, up: UpProcess, kind: str) -> None:
    request_id = uuid.uuid4().hex
    sub = await nc.subscribe(p.stream_subject(request_id))
    await nc.publish(p.agent_subject("w.stream-raise"), json.dumps({"kind": kind}).encode(),
                     headers={p.HDR_REQUEST_ID: request_id, p.HDR_STREAM: "true"})
    first, last = await sub.next_msg(5), await sub.next_msg(5)
    assert json.loads(first.data) == {"i": 0}
    assert last.headers[p.HDR_STREAM_END] == "true"
    assert MeshError.from_body(last.data).code == p.HANDLER_ERROR
    await still_serves(nc, up)


# 5. A handler's message never forges a log line.

async def test_a_newline_in_a_handler_error_is_escaped_in_the_log(
        nc: Client, up: UpProcess) -> None:
    start = len(up.lines)
    with pytest.raises(MeshError):
        await call_agent(nc, "w.log-raise", {"kind": "ValueError"}, 5)
    line = up.wait_for("[w.log-raise]", start=start)
    assert re.search(r"failed: handler_error: ValueError: line one\\nforged: ready: 0 agents "
                     r"\(trace [0-9a-f]{32}\)$", line)
    assert not any(line.startswith("forged") for line in up.lines)


async def test_a_handler_logging_a_newline_cannot_forge_a_line(nc: Client, up: UpProcess) -> None:
    start = len(up.lines)
    await call_agent(nc, "w.chatty", {"text": "hi\nready: 99 agents\r\x1b[2J"}, 5)
    line = up.wait_for("user said", start=start)
    assert line.endswith("[w.chatty] user said: hi\\nready: 99 agents\\r\\x1b[2J")
    assert not any(line.startswith("ready: 99") for line in up.lines)


async def test_many_hostile_requests_at_once_leave_up_serving(nc: Client, up: UpProcess) -> None:
    await asyncio.gather(*(
        request(nc, "w.echo", b"{}", {p.HDR_REQUEST_ID: "bad id"}) for _ in range(50)))
    await still_serves(nc, up)


def test_up_log_shows_no_traceback(up: UpProcess) -> None:
    assert "Traceback" not in up.log, up.log



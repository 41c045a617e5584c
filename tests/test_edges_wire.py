"""Section 12 on the request path: names from the wire or a handler never reach the protocol
unchecked, a passed-through error is capped, and one hostile answer stops nobody."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from runtime.core import protocol as p
from runtime.core.protocol import MeshError
from runtime.nats.bus import NatsBus
from runtime.nats.caller import call_agent
from runtime.nats.client import catalog
from runtime.nats.connection import connect
from runtime.nats.embedded import NatsServer
from runtime.nats.headerblock import HeaderBlock, publish
from tests.helpers import UpProcess, cli, write_mesh


def test_bounded_code_keeps_ours_and_folds_the_rest_into_other() -> None:
    assert [p.bounded_code(c) for c in (p.HANDLER_ERROR, p.TIMEOUT, p.STEP_FAILED)] == [
        p.HANDLER_ERROR, p.TIMEOUT, p.STEP_FAILED]
    assert {p.bounded_code(c) for c in ("x" * 1_000_000, "custom_code", "", "ok")} == {"other"}



# --- A served mesh whose handlers pass names, keys and capabilities from the payload on ----

HANDLERS = """
    async def echo(payload):
        return payload

    async def router(payload, ctx):
        return await ctx.call(payload["agent"], {})

    async def by_capability(payload, ctx):
        return await ctx.call(capability=payload["capability"])

    async def caster(payload, ctx):
        return {"answers": await ctx.broadcast(payload["capability"], {}, within=0.5)}

    async def stater(payload, ctx):
        await ctx.state.put(payload["key"], 1)
        return {}

    async def forwarder(payload, ctx):
        return await ctx.call("e.echo", payload["body"])

    async def updater(payload, ctx):
        await ctx.state.update(payload["key"], lambda _: payload["value"])
        return {}

    async def raiser(payload):
        from runtime import MeshError

        deep = "leaf"
        for _ in range(5000):
            deep = {"k": deep}
        raise MeshError("c" * payload["n"], "m" * payload["n"], agent="a" * payload["n"],
                        details={"object": object(), "set": {1, 2}, "deep": deep})
"""

MESH = """
    version: 1
    name: edges-wire
    defaults: {timeout: 5s}
    agents:
      e.echo:
        handler: {mod}:echo
        capabilities: [e.cap]
      e.router:
        handler: {mod}:router
      e.by-capability:
        handler: {mod}:by_capability
      e.caster:
        handler: {mod}:caster
      e.stater:
        handler: {mod}:stater
      e.forwarder:
        handler: {mod}:forwarder
      e.updater:
        handler: {mod}:updater
      e.raiser:
        handler: {mod}:raiser
    pipelines:
      e.setter:
        steps:
          - id: put
            set_state: {key: "${{ input.key }}", value: 1}
      e.getter:
        steps:
          - id: get
            get_state: "${{ input.key }}"
      e.vote:
        steps:
          - id: votes
            broadcast: e.flood
            max_answers: 5
            within: 3s
    external:
      e.elsewhere:
        capabilities: [e.flood]
"""

# What a crafted name would make the serving connection say, were it spliced in unchecked.
INJECTED = ("x 0\r\n\r\nPUB injected.proof 2\r\nhi\r\n"
            "PUB $KV.mesh-catalog.catalog 2\r\n[]\r\nPUB mesh.agent.e.echo")
BAD_NAMES = ["a b", "e.echo\n", "a\r\nPUB injected.proof 2", "a..b", ".a", "a.", "a.*", "a.>",
             "*", ">", "$KV.mesh-catalog.catalog", "a\tb", "a\x00b", "", "x" * 5000, INJECTED]
BAD_KEYS = ["x\n", "x y", "x\r\nPUB injected.proof 2", "a.*", "a.>", ".x", "x.", "", "a..b",
            "x" * 2000, "$x", "a\x7fb"]


@pytest.fixture(scope="module")
def server() -> Iterator[NatsServer]:
    with NatsServer() as own:  # its own: these tests look at the catalog
        yield own


@pytest.fixture(scope="module")
def up(server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    path, _ = write_mesh(tmp_path_factory.mktemp("edges-wire"), MESH, HANDLERS)
    with UpProcess(path, server.url, "--no-reload") as process:
        yield process


@pytest.fixture
async def nc(up: UpProcess, server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(server.url)
    yield client
    await client.close()


@pytest.fixture
async def spy(nc: Client) -> AsyncIterator[list[Msg]]:
    """Whatever reaches `injected.proof` or the catalog's KV subject while a test runs."""
    seen: list[Msg] = []

    async def keep(msg: Msg) -> None:
        seen.append(msg)

    subs = [await nc.subscribe(s, cb=keep) for s in ("injected.>", "injected.proof",
                                                      "$KV.mesh-catalog.>")]
    await nc.flush()
    yield seen
    for sub in subs:
        await sub.unsubscribe()


async def unharmed(nc: Client, up: UpProcess, spy: list[Msg]) -> None:
    """`up` still serves on its first connection, published nothing for anyone, and its
    catalog is whole."""
    marker = uuid.uuid4().hex
    assert await call_agent(nc, "e.echo", {"still": marker}, 5) == {"still": marker}
    await nc.flush()
    assert spy == []
    names = {e["name"] for e in await catalog(nc) or []}
    assert {"e.echo", "e.router", "e.setter"} <= names
    assert up.process.poll() is None
    assert "disconnected from NATS" not in up.log
    assert "stopped unexpectedly" not in up.log


def invalid_input(reply: Msg) -> MeshError:
    assert reply.headers is not None and reply.headers[p.HDR_STATUS] == "error"
    error = MeshError.from_body(reply.data)
    assert error.code == p.INVALID_INPUT, error
    return error


async def ask(nc: Client, name: str, payload: Any) -> Msg:
    return await nc.request(p.agent_subject(name), json.dumps(payload).encode(), timeout=5)


@pytest.mark.parametrize("bad", BAD_NAMES, ids=range(len(BAD_NAMES)))
async def test_a_name_from_the_payload_never_reaches_the_protocol(
        nc: Client, up: UpProcess, spy: list[Msg], bad: str) -> None:
    error = invalid_input(await ask(nc, "e.router", {"agent": bad}))
    assert error.message.startswith("invalid name")
    await unharmed(nc, up, spy)


@pytest.mark.parametrize("bad", BAD_NAMES[:6], ids=range(6))
async def test_a_capability_from_the_payload_is_checked_for_call_and_broadcast(
        nc: Client, up: UpProcess, spy: list[Msg], bad: str) -> None:
    invalid_input(await ask(nc, "e.by-capability", {"capability": bad}))
    invalid_input(await ask(nc, "e.caster", {"capability": bad}))
    await unharmed(nc, up, spy)


@pytest.mark.parametrize("bad", BAD_KEYS, ids=range(len(BAD_KEYS)))
async def test_a_state_key_from_a_handler_or_an_expression_is_checked(
        nc: Client, up: UpProcess, spy: list[Msg], bad: str) -> None:
    invalid_input(await ask(nc, "e.stater", {"key": bad}))
    for pipeline in ("e.setter", "e.getter"):
        reply = await ask(nc, pipeline, {"key": bad})
        error = MeshError.from_body(reply.data)
        assert error.code == p.STEP_FAILED and error.details["code"] == p.INVALID_INPUT, error
    await unharmed(nc, up, spy)



# --- What a handler sends on is measured before it goes out --------------------------------

async def test_a_call_whose_payload_fits_but_not_with_its_headers_is_refused(
        nc: Client, up: UpProcess, spy: list[Msg]) -> None:
    body = {"blob": "x" * (nc.max_payload - 60)}  # the request fits; with headers it would not
    reply = await ask(nc, "e.forwarder", {"body": body})
    error = MeshError.from_body(reply.data)
    assert error.code == p.INVALID_INPUT, error
    assert "max_payload" in error.message
    await unharmed(nc, up, spy)


async def test_a_state_value_too_big_for_max_payload_is_refused(
        nc: Client, up: UpProcess, spy: list[Msg]) -> None:
    value = "x" * (nc.max_payload - 80)  # fits alone; with the compare-and-set header it does not
    reply = await ask(nc, "e.updater", {"key": f"big-{uuid.uuid4().hex[:6]}", "value": value})
    error = MeshError.from_body(reply.data)
    assert error.code == p.INVALID_INPUT, error
    assert "max_payload" in error.message
    await unharmed(nc, up, spy)


async def test_a_handler_s_own_huge_or_odd_error_is_answered_capped(
        nc: Client, up: UpProcess, spy: list[Msg]) -> None:
    reply = await ask(nc, "e.raiser", {"n": 500_000})
    assert len(reply.data) < 8_000
    error = MeshError.from_body(reply.data)
    assert error.code == "c" * 64 and error.agent.startswith("a" * 256)
    assert error.details["set"] == "{1, 2}" and error.details["object"].startswith("<object")
    await unharmed(nc, up, spy)


# --- A hostile answer: an error whose every field is as long as a message allows ------------

def hostile_error(nc: Client, field: str) -> bytes:
    room = nc.max_payload - 4000  # with its 2 KB header, the hostile message must fit too
    error: dict[str, Any] = {"code": "boom", "message": "m", "agent": "e.ghost",
                             "request_id": "r", "details": {}}
    error[field] = {"blob": "d" * (room - 30_000), "deep": nest(200)} if field == "details" else "z" * room
    return json.dumps(error).encode()


def nest(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": [value, "x" * 100]}
    return value


@pytest.mark.parametrize("field", ["code", "agent", "message", "details", "request_id"])
async def test_a_hostile_answer_passed_through_is_capped_and_stops_nobody(
        nc: Client, up: UpProcess, spy: list[Msg], field: str) -> None:
    # A plain client joins e.echo's queue group and answers ctx.call with a huge error.
    hostile = await nats.connect(nc.connected_url.geturl() if nc.connected_url else "")
    answered = 0

    async def answer(msg: Msg) -> None:
        nonlocal answered
        answered += 1
        await hostile.publish(msg.reply, hostile_error(hostile, field),
                              headers={p.HDR_STATUS: "error", p.HDR_SOURCE: "x" * 2000})

    sub = await hostile.subscribe(p.agent_subject("e.echo"), queue=p.queue_group("e.echo"),
                                  cb=answer)
    await hostile.flush()
    try:
        replies = [await ask(nc, "e.router", {"agent": "e.echo"}) for _ in range(16)]
    finally:
        await sub.unsubscribe()
        await hostile.flush()  # the server routes no more of e.echo's calls to it
        await hostile.close()
    assert answered > 0
    for reply in replies:
        assert len(reply.data) < 8_000  # every field capped, so the re-raise is small
        error = MeshError.from_body(reply.data) if reply.headers[p.HDR_STATUS] == "error" else None
        if error is not None:
            assert len(error.code) <= 64 and len(error.agent) <= 300, error
    await unharmed(nc, up, spy)



# --- Broadcast floods: at most max_answers answers and 16 MB, and the result says so -------

class Flood:
    """A hostile responder: answers every broadcast to `capability` `count` times."""

    def __init__(self, nc: Client, capability: str, count: int, size: int = 10):
        self.nc, self.capability, self.count = nc, capability, count
        self.body = json.dumps({"blob": "b" * size}).encode()
        self.broadcasts = 0

    async def __aenter__(self) -> Flood:
        self.sub = await self.nc.subscribe(p.broadcast_subject(self.capability), cb=self._answer)
        await self.nc.flush()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sub.unsubscribe()

    async def _answer(self, msg: Msg) -> None:
        self.broadcasts += 1
        headers = {p.HDR_STATUS: "ok", p.HDR_SOURCE: "hostile", p.HDR_INSTANCE_ID: "h"}
        for _ in range(self.count):
            await self.nc.publish(msg.reply, self.body, headers=headers)


def cut_short(answers: list[dict[str, Any]]) -> str:
    last = answers[-1]
    assert last["agent"] == "" and last["status"] == "error", last
    assert last["error"]["code"] == p.OVERLOADED
    return str(last["error"]["message"])


async def test_a_handler_s_broadcast_keeps_at_most_max_answers(
        nc: Client, up: UpProcess, spy: list[Msg]) -> None:
    hostile = await nats.connect(nc.connected_url.geturl() if nc.connected_url else "")
    try:
        async with Flood(hostile, "e.flood", 1_500):
            reply = await ask(nc, "e.caster", {"capability": "e.flood"})
    finally:
        await hostile.close()
    answers = json.loads(reply.data)["answers"]
    assert len(answers) == 1_001 and all(a["agent"] == "hostile" for a in answers[:-1])
    assert cut_short(answers) == ("stopped gathering: more than 1000 answers (max_answers); "
                                  "later answers were not read")
    await unharmed(nc, up, spy)


async def test_a_pipeline_broadcast_step_takes_max_answers(
        nc: Client, up: UpProcess, spy: list[Msg]) -> None:
    async with Flood(nc, "e.flood", 50):
        reply = await ask(nc, "e.vote", {})
    answers = json.loads(reply.data)
    assert len(answers) == 6
    assert "more than 5 answers (max_answers)" in cut_short(answers)
    await unharmed(nc, up, spy)


async def test_a_broadcast_keeps_at_most_16_mb_of_answers(nc: Client, up: UpProcess) -> None:
    async with Flood(nc, "e.flood", 120, size=200_000):  # 24 MB of answers
        answers = await NatsBus(nc).broadcast("e.flood", {}, 20, "rid-flood")
    kept = answers[:-1]
    assert 70 < len(kept) <= 16 * 1024 * 1024 // 200_000
    assert cut_short(answers) == ("stopped gathering: more than 16 MB of answers; later "
                                  "answers were not read")
    assert answers[-1]["error"]["details"]["bytes"] <= 16 * 1024 * 1024


def test_the_cli_broadcast_says_where_it_stopped(nc: Client, server: NatsServer) -> None:
    async def run() -> subprocess.CompletedProcess[str]:
        hostile = await nats.connect(server.url)
        try:
            async with Flood(hostile, "e.flood", 30):
                return await asyncio.to_thread(cli, "broadcast", "e.flood", "{}", "--within",
                                               "5s", "--max-answers", "10", "--nats", server.url)
        finally:
            await hostile.close()

    result = asyncio.run(run())
    answers = json.loads(result.stdout)
    assert len(answers) == 11 and result.returncode == 0
    assert "more than 10 answers (max_answers)" in cut_short(answers)
    assert result.stderr == ("note: stopped gathering: more than 10 answers (max_answers); "
                             "later answers were not read\n")

# --- No worker's exit status stops the other workers ----------------------------------------

DYING = """
    import os

    async def echo(payload):
        return payload

    async def die(payload):
        os._exit(3)  # what a worker whose connection NATS closed exits with, too
"""

DYING_MESH = """
    version: 1
    name: edges-dying
    agents:
      d.echo:
        handler: {mod}:echo
      d.die:
        handler: {mod}:die
"""


async def test_a_worker_that_exits_3_is_replaced_and_the_others_serve_on(
        tmp_path: Path, nats_url: str) -> None:
    path, _ = write_mesh(tmp_path, DYING_MESH, DYING)
    with UpProcess(path, nats_url, "--no-reload", "--workers", "2") as up:
        before = set(up.worker_pids())
        client = await nats.connect(nats_url)
        try:
            with pytest.raises(nats.errors.TimeoutError):
                await client.request(p.agent_subject("d.die"), b"{}", timeout=2)
            line = up.wait_for("stopped unexpectedly")
            for n in range(20):  # the other worker answers all along
                assert await call_agent(client, "d.echo", {"n": n}, 5) == {"n": n}
            up.wait_for("serves in place of pid")
            assert await call_agent(client, "d.echo", {"n": "after"}, 5) == {"n": "after"}
        finally:
            await client.close()
        assert up.process.poll() is None
        after = set(up.worker_pids())
    assert line.endswith("stopped unexpectedly (exit code 3); starting a new one")
    assert len(before & after) == 1 and len(after) == 2


# --- The serving connection's backstop: every publish is checked, whatever built it --------

async def test_the_serving_connection_refuses_what_the_server_would_close_it_for(
        nats_url: str) -> None:
    served = await connect([nats_url], name="guard-test")
    try:
        for subject in ("a b", "a\n", "a\r\nPUB injected.proof 2", "a\x00b", "", "x" * 5000):
            with pytest.raises(nats.errors.BadSubjectError):
                await served.publish(subject, b"{}")
        with pytest.raises(nats.errors.BadSubjectError):
            await served.publish("ok.subject", b"{}", reply="bad reply")
        with pytest.raises(nats.errors.MaxPayloadError):  # the body fits; with headers it would not
            await served.publish("ok.subject", b"x" * (served.max_payload - 10),
                                 headers={p.HDR_REQUEST_ID: "r" * 64})
        with pytest.raises(nats.errors.MaxPayloadError):  # the reply fast path measures too
            await publish(served, "ok.subject", b"x" * (served.max_payload - 10),
                          HeaderBlock({p.HDR_STATUS: "ok"}), "id-1")
        kv = await served.jetstream().create_key_value(bucket=f"guard-{uuid.uuid4().hex[:6]}")
        with pytest.raises(nats.errors.BadSubjectError):  # nats-py's own key check lets it by
            await kv.delete("x\n")
        await served.flush(timeout=5)
        assert served.is_connected and served.last_error is None
        await served.publish("ok.subject", b"{}")
    finally:
        await served.close()

"""Calls by capability: NATS routes each to one agent offering it, in any `up` process."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.nats.caller import call_agent, request
from tests.helpers import UpProcess, cli, write_mesh

HANDLERS = '''
    async def short(payload):
        return {"summary": payload["text"][:5], "by": "short"}

    async def long(payload):
        return {"summary": payload["text"], "by": "long"}

    async def delegate(payload, ctx):
        return await ctx.call(capability="{cap}", payload={"text": payload["text"]})

    async def no_target(payload, ctx):
        return await ctx.call(payload={"text": "x"})
'''

SCHEMA = "{type: object, properties: {text: {type: string}}, required: [text]}"
MESH = '''
    version: 1
    name: caps
    agents:
      {p}.short:
        handler: {mod}:short
        capabilities: [{cap}]
        input: {type: object, properties: {text: {type: string}}, required: [text]}
      {p}.long:
        handler: {mod}:long
        capabilities: [{cap}, {p}.other]
        input: {type: object, properties: {text: {type: string}}, required: [text]}
      {p}.delegate:
        handler: {mod}:delegate
      {p}.no-target:
        handler: {mod}:no_target
    pipelines:
      {p}.digest:
        steps:
          - id: summary
            capability: {cap}
            with: {text: "${{ input.text }}"}
'''


def mesh_text(prefix: str, cap: str, text: str = MESH) -> str:
    return text.replace("{p}", prefix).replace("{cap}", cap)


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, nats_server: Any) -> Any:
    unique = uuid.uuid4().hex[:8]
    prefix, cap = f"c{unique}", f"c{unique}.summarize"
    path, _ = write_mesh(tmp_path_factory.mktemp("caps"), mesh_text(prefix, cap),
                         mesh_text(prefix, cap, HANDLERS))
    with UpProcess(path, nats_server.url, "--no-reload") as up:
        yield prefix, cap, up


async def sources(nc: Client, cap: str, count: int) -> Counter[str]:
    async def one() -> str:
        reply = await request(nc, cap, {"text": "hello world"}, 5, capability=True)
        return str(reply.headers[p.HDR_SOURCE])
    return Counter(await asyncio.gather(*(one() for _ in range(count))))


async def test_a_capability_call_reaches_every_agent_offering_it(served: Any, nc: Client) -> None:
    prefix, cap, _ = served
    assert set(await sources(nc, cap, 40)) == {f"{prefix}.short", f"{prefix}.long"}


async def test_the_reply_is_the_answering_agents_own(served: Any, nc: Client) -> None:
    prefix, _, _ = served
    reply = await request(nc, f"{prefix}.other", {"text": "hello world"}, 5, capability=True)
    assert json.loads(reply.data) == {"summary": "hello world", "by": "long"}
    assert reply.headers[p.HDR_SOURCE] == f"{prefix}.long"


async def test_a_capability_nobody_offers_is_not_found_at_once(nc: Client, unique: str) -> None:
    started = time.monotonic()
    with pytest.raises(p.MeshError) as caught:
        await call_agent(nc, f"none{unique}", {}, 5, capability=True)
    assert time.monotonic() - started < 1
    assert (caught.value.code, caught.value.message) == (
        "not_found", f"no agent offers capability 'none{unique}'")


async def test_an_invalid_payload_is_the_answering_agents_error(served: Any, nc: Client) -> None:
    _, cap, _ = served
    with pytest.raises(p.MeshError) as caught:
        await call_agent(nc, cap, {"txt": 1}, 5, capability=True)
    assert caught.value.code == "invalid_input"
    assert caught.value.agent.endswith((".short", ".long"))


def test_cli_calls_by_capability(served: Any, nats_url: str) -> None:
    prefix, cap, _ = served
    done = cli("call", "--capability", cap, '{"text": "hello world"}', "--nats", nats_url)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert done.stderr == f"answered by {prefix}.{reply['by']}\n"


def test_cli_capability_nobody_offers(nats_url: str, unique: str) -> None:
    done = cli("call", "--capability", f"none{unique}", "{}", "--nats", nats_url)
    assert done.returncode == 1
    assert json.loads(done.stderr)["message"] == f"no agent offers capability 'none{unique}'"


async def test_a_handler_calls_by_capability(served: Any, nc: Client) -> None:
    prefix, _, _ = served
    replies = [await call_agent(nc, f"{prefix}.delegate", {"text": "hello world"}, 5)
               for _ in range(3)]
    assert {r["by"] for r in replies} <= {"short", "long"}


async def test_ctx_call_needs_a_name_or_a_capability(served: Any, nc: Client) -> None:
    prefix, _, _ = served
    with pytest.raises(p.MeshError) as caught:
        await call_agent(nc, f"{prefix}.no-target", {}, 5)
    assert (caught.value.code, caught.value.message) == (
        "handler_error", "ValueError: ctx.call needs an agent name or capability=..., not both")


async def test_a_pipeline_step_calls_by_capability(served: Any, nc: Client) -> None:
    prefix, _, _ = served
    reply = await call_agent(nc, f"{prefix}.digest", {"text": "hello world"}, 5)
    assert reply in ({"summary": "hello", "by": "short"}, {"summary": "hello world", "by": "long"})


async def test_catalog_and_registry_list_capabilities(served: Any, nc: Client) -> None:
    prefix, cap, _ = served
    js = nc.jetstream()
    entries = json.loads((await (await js.key_value("mesh-catalog")).get("catalog")).value)
    ours = {e["name"]: e for e in entries if e["name"].startswith(prefix)}
    assert ours[f"{prefix}.long"]["capabilities"] == [cap, f"{prefix}.other"]
    assert "capabilities" not in ours[f"{prefix}.delegate"]
    card = json.loads((await (await js.key_value("mesh-registry")).get(f"{prefix}.short")).value)
    assert card["x-agentmesh"]["capabilities"] == [cap]
    assert card["capabilities"] == {"streaming": False, "invocable": True}


AGENT_ALONE = '''
    version: 1
    name: caps
    agents:
      {p}.{which}:
        handler: {mod}:{which}
        capabilities: [{cap}]
'''


async def test_two_up_processes_share_a_capability(tmp_path: Path, nats_url: str, nc: Client,
                                                    unique: str) -> None:
    prefix, cap = f"c{unique}", f"c{unique}.summarize"
    ups = []
    for which in ("short", "long"):
        folder = tmp_path / which
        folder.mkdir()
        text = mesh_text(prefix, cap, AGENT_ALONE).replace("{which}", which)
        path, _ = write_mesh(folder, text, mesh_text(prefix, cap, HANDLERS))
        ups.append(UpProcess(path, nats_url, "--no-reload"))
    try:
        for up in ups:
            up.wait_for("ready:")
        assert set(await sources(nc, cap, 40)) == {f"{prefix}.short", f"{prefix}.long"}
    finally:
        for up in ups:
            up.stop()


async def test_reload_removing_an_offering_agent_fails_no_call(
        tmp_path: Path, nats_url: str, nc: Client, unique: str) -> None:
    prefix, cap = f"c{unique}", f"c{unique}.summarize"
    both = textwrap.dedent(mesh_text(prefix, cap)).lstrip()
    path, module = write_mesh(tmp_path, both, mesh_text(prefix, cap, HANDLERS))
    one_left = both.replace(f"  {prefix}.short:\n    handler: {{mod}}:short\n"
                            f"    capabilities: [{cap}]\n    input: {SCHEMA}\n", "")
    assert one_left != both
    with UpProcess(path, nats_url) as up:
        seen: list[str] = []
        failures: list[str] = []
        stop = asyncio.Event()

        async def caller() -> None:
            while not stop.is_set():
                try:
                    reply = await request(nc, cap, {"text": "hello world"}, 5, capability=True)
                    seen.append(str(reply.headers[p.HDR_SOURCE]))
                except p.MeshError as exc:
                    failures.append(f"{exc.code}: {exc.message}")

        callers = [asyncio.create_task(caller()) for _ in range(8)]
        try:
            while len(seen) < 100:
                await asyncio.sleep(0.01)
            start = len(up.lines)
            path.write_text(one_left.replace("{mod}", module))
            line = await asyncio.to_thread(up.wait_for, "reloaded:", 20, start)
            after = len(seen)
            while len(seen) < after + 200:
                await asyncio.sleep(0.01)
        finally:
            stop.set()
            await asyncio.gather(*callers)
    assert f"removed {prefix}.short" in line
    assert failures == []
    assert {f"{prefix}.short", f"{prefix}.long"} <= set(seen[:after])
    assert set(seen[after + 20:]) == {f"{prefix}.long"}  # a few were in flight at the switch

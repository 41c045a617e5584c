"""Interop with the real OpenAgentMesh 0.2 SDK, unchanged, in both directions."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from openagentmesh import AgentMesh, AgentSpec, MeshError
from pydantic import BaseModel

from tests.helpers import UpProcess, cli, write_mesh

PREFIX = f"oam{uuid.uuid4().hex[:6]}"

HANDLERS = """
    async def greet(payload):
        return {"greeting": f"hello {payload['name']}"}

    async def words(payload):
        for word in payload["text"].split():
            yield {"word": word}

    async def fail(payload):
        raise RuntimeError("no luck")
"""

MESH = f"""
    version: 1
    agents:
      {PREFIX}.greet:
        description: Greets by name.
        handler: {{mod}}:greet
        input: {{type: object, properties: {{name: {{type: string}}}}, required: [name]}}
        output: {{type: object, properties: {{greeting: {{type: string}}}}, required: [greeting]}}
        tags: [demo]
        version: 1.2.3
      {PREFIX}.words:
        description: Streams words.
        handler: {{mod}}:words
        input: {{type: object, properties: {{text: {{type: string}}}}, required: [text]}}
        output: {{type: object, properties: {{word: {{type: string}}}}, required: [word]}}
      {PREFIX}.fail:
        description: Always fails.
        handler: {{mod}}:fail
"""


@pytest.fixture(scope="module")
def up(nats_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    path, _ = write_mesh(tmp_path_factory.mktemp("oam"), MESH, HANDLERS)
    with UpProcess(path, nats_server.url, "--no-reload") as process:
        yield process


@pytest.fixture
async def oam(up: UpProcess, nats_url: str) -> AsyncIterator[AgentMesh]:
    async with AgentMesh(nats_url) as mesh:
        yield mesh


async def test_oam_catalog_lists_our_agents(oam: AgentMesh) -> None:
    entries = {e.name: e for e in await oam.catalog(channel=PREFIX)}
    assert set(entries) == {f"{PREFIX}.greet", f"{PREFIX}.words", f"{PREFIX}.fail"}
    greet = entries[f"{PREFIX}.greet"]
    assert (greet.description, greet.version, greet.tags) == ("Greets by name.", "1.2.3", ["demo"])
    assert (greet.invocable, greet.streaming) == (True, False)
    assert entries[f"{PREFIX}.words"].streaming is True


async def test_oam_call(oam: AgentMesh) -> None:
    assert await oam.call(f"{PREFIX}.greet", {"name": "ada"}) == {"greeting": "hello ada"}


async def test_oam_stream(oam: AgentMesh) -> None:
    chunks = [c async for c in oam.stream(f"{PREFIX}.words", {"text": "one two three"})]
    assert chunks == [{"word": "one"}, {"word": "two"}, {"word": "three"}]


async def test_oam_refuses_call_on_a_streaming_agent(oam: AgentMesh) -> None:
    with pytest.raises(MeshError) as caught:
        await oam.call(f"{PREFIX}.words", {"text": "x"})
    assert caught.value.code == "invocation_mismatch"


async def test_oam_sees_our_error_codes(oam: AgentMesh) -> None:
    with pytest.raises(MeshError) as invalid:
        await oam.call(f"{PREFIX}.greet", {"name": 7})
    with pytest.raises(MeshError) as failed:
        await oam.call(f"{PREFIX}.fail")  # no payload: OpenAgentMesh sends an empty body
    assert invalid.value.code == "invalid_input"
    assert invalid.value.details["errors"][0]["path"] == "/name"
    assert failed.value.code == "handler_error"
    assert failed.value.message == "RuntimeError: no luck"


async def test_oam_reads_our_registry_card(oam: AgentMesh) -> None:
    contract = await oam.contract(f"{PREFIX}.greet")
    skill = contract.skills[0]
    assert contract.subject == f"mesh.agent.{PREFIX}.greet"
    assert skill["inputSchema"]["required"] == ["name"]
    assert skill["outputSchema"]["required"] == ["greeting"]
    streaming = await oam.contract(f"{PREFIX}.words")
    assert streaming.chunk_schema is not None and streaming.chunk_schema["required"] == ["word"]
    assert "outputSchema" not in streaming.skills[0]


class Question(BaseModel):
    text: str


class Answer(BaseModel):
    answer: str


async def test_our_cli_calls_an_oam_agent(up: UpProcess, nats_url: str) -> None:
    name = f"{PREFIX}.oracle"
    mesh = AgentMesh(nats_url)

    @mesh.agent(AgentSpec(name=name, description="Answers questions."))
    async def oracle(question: Question) -> Answer:
        if question.text == "fail":
            raise ValueError("cannot answer")
        return Answer(answer=question.text[::-1])

    async with mesh:  # the agent is served by this event loop: run the CLI beside it
        ok = await asyncio.to_thread(cli, "call", name, '{"text": "abc"}', "--nats", nats_url)
        bad = await asyncio.to_thread(cli, "call", name, '{"text": "fail"}', "--nats", nats_url)
        listed = await asyncio.to_thread(cli, "ls", "--json", "--nats", nats_url)
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"answer": "cba"}
    assert bad.returncode == 1
    assert json.loads(bad.stderr)["code"] == "handler_error"
    assert any(e["name"] == name for e in json.loads(listed.stdout))

"""`tools` prints OpenAgentMesh's tool shapes; `mcp` is an MCP stdio server the SDK's client can use."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from openagentmesh._models import AgentContract

from tests.helpers import ROOT, UpProcess, cli, write_mesh

PREFIX = f"mcp{uuid.uuid4().hex[:6]}"

HANDLERS = """
    def upper(payload):
        if payload["text"] == "fail":
            raise RuntimeError("asked to fail")
        return {"text": payload["text"].upper(), "length": len(payload["text"])}

    async def words(payload):
        for word in payload["text"].split():
            yield {"word": word}

    def anything(payload):
        return [1, 2]
"""

MESH = f"""
    version: 1
    agents:
      {PREFIX}.upper:
        description: Upper-cases text.
        handler: {{mod}}:upper
        input:
          type: object
          properties: {{text: {{type: string, minLength: 1}}}}
          required: [text]
        output:
          type: object
          properties: {{text: {{type: string}}, length: {{type: integer}}}}
          required: [text, length]
      {PREFIX}.words:
        description: Streams words.
        handler: {{mod}}:words
        input: {{type: object, properties: {{text: {{type: string}}}}, required: [text]}}
        output: {{type: object, properties: {{word: {{type: string}}}}}}
      {PREFIX}.anything:
        description: No schemas at all.
        handler: {{mod}}:anything
"""


@pytest.fixture(scope="module")
def up(nats_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    path, _ = write_mesh(tmp_path_factory.mktemp("mcp"), MESH, HANDLERS)
    with UpProcess(path, nats_server.url, "--no-reload") as process:
        yield process


def _ours(tools: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {t[key]["name"] if key else t["name"]: t for t in tools
            if (t[key]["name"] if key else t["name"]).startswith(PREFIX)}


def _contract(name: str, nats_url: str) -> AgentContract:
    """OpenAgentMesh's own contract object for the agent, from the card `up` wrote."""
    card = json.loads(cli("describe", name, "--json", "--nats", nats_url).stdout)
    return AgentContract(name=name, description=card["description"],
                         input_schema=card["input"],
                         output_schema=None if card["streaming"] else card["output"],
                         streaming=card["streaming"])


def test_tools_match_openagentmesh_shapes(up: UpProcess, nats_url: str) -> None:
    openai = _ours(json.loads(cli("tools", "--nats", nats_url).stdout), "function")
    anthropic = _ours(json.loads(cli("tools", "--format", "anthropic", "--nats", nats_url).stdout), "")
    assert set(openai) == set(anthropic) == {f"{PREFIX}_upper", f"{PREFIX}_words", f"{PREFIX}_anything"}
    for name in ("upper", "words", "anything"):
        contract = _contract(f"{PREFIX}.{name}", nats_url)
        assert openai[f"{PREFIX}_{name}"] == contract.to_openai_tool()
        assert anthropic[f"{PREFIX}_{name}"] == contract.to_anthropic_tool()
    assert anthropic[f"{PREFIX}_upper"]["description"] == "Upper-cases text.\nReturns: text, length."
    assert anthropic[f"{PREFIX}_anything"]["input_schema"] == {"type": "object", "properties": {}}


def _server(nats_url: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "runtime", "mcp", "--nats", nats_url],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=str(ROOT))


async def test_mcp_lists_and_calls_the_mesh(up: UpProcess, nats_url: str) -> None:
    async with Client(_server(nats_url)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools if t.name.startswith(PREFIX)}
        assert set(tools) == {f"{PREFIX}_upper", f"{PREFIX}_words", f"{PREFIX}_anything"}
        assert tools[f"{PREFIX}_upper"].input_schema == {
            "type": "object", "properties": {"text": {"type": "string", "minLength": 1}},
            "required": ["text"]}
        assert tools[f"{PREFIX}_upper"].description == "Upper-cases text.\nReturns: text, length."

        done = await client.call_tool(f"{PREFIX}_upper", {"text": "abc"})
        assert not done.is_error
        assert done.structured_content == {"text": "ABC", "length": 3}
        assert json.loads(done.content[0].text) == {"text": "ABC", "length": 3}  # type: ignore[union-attr]

        streamed = await client.call_tool(f"{PREFIX}_words", {"text": "a b"})
        assert json.loads(streamed.content[0].text) == [{"word": "a"}, {"word": "b"}]  # type: ignore[union-attr]


async def test_mcp_mesh_errors_are_tool_errors(up: UpProcess, nats_url: str) -> None:
    async with Client(_server(nats_url)) as client:
        await client.list_tools()
        bad = await client.call_tool(f"{PREFIX}_upper", {"text": ""})
        assert bad.is_error
        body = json.loads(bad.content[0].text)  # type: ignore[union-attr]
        assert (body["code"], body["details"]["errors"][0]["path"]) == ("invalid_input", "/text")
        failed = await client.call_tool(f"{PREFIX}_upper", {"text": "fail"})
        assert failed.is_error
        assert json.loads(failed.content[0].text)["message"] == "RuntimeError: asked to fail"  # type: ignore[union-attr]
        unknown = await client.call_tool(f"{PREFIX}_nope", {})
        assert unknown.is_error
        assert unknown.content[0].text == f"no tool named '{PREFIX}_nope' on the mesh"  # type: ignore[union-attr]


def test_mcp_without_nats_says_so() -> None:
    result = cli("mcp", "--nats", "nats://127.0.0.1:1")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "error: cannot reach NATS at nats://127.0.0.1:1 (nats: no servers available for "
        "connection): is `mesh-runtime up` running? Point at another server with --nats or NATS_URL\n")

"""`mesh-runtime mcp`: an MCP server on stdio whose tools are the mesh's agents and pipelines.

Each tools/list reads the catalog afresh (the mesh changes while the server runs); each
tools/call is a mesh call, and a mesh error comes back as an MCP tool error (`isError`)
carrying the error body, so the model sees the code and the message.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.nats import client
from runtime.nats.connection import connect
from runtime.nats.tooldefs import Tool, mesh_tools
from runtime.serve.mcp_stdio import stdio

log = logging.getLogger("mesh-runtime")


class MeshTools:
    """The mesh seen as MCP tools, over one NATS connection."""

    def __init__(self, nc: Client, timeout: float):
        self.nc = nc
        self.timeout = timeout
        self.tools: dict[str, Tool] = {}

    async def refresh(self) -> list[Tool]:
        tools, warnings = await mesh_tools(self.nc, await client.catalog(self.nc) or [])
        for warning in warnings:
            log.warning("%s", warning)
        self.tools = {t.name: t for t in tools}
        return tools

    async def list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=t.name, description=t.description, input_schema=t.input_schema)
            for t in await self.refresh()])

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = self.tools.get(params.name)
        if tool is None:
            await self.refresh()  # a name added since the last list
            tool = self.tools.get(params.name)
        if tool is None:
            return _error(f"no tool named '{params.name}' on the mesh")
        payload = params.arguments or {}
        try:
            if tool.streaming:
                result: Any = [c async for c in client.stream(self.nc, tool.mesh_name, payload,
                                                             self.timeout)]
            else:
                result = await client.call(self.nc, tool.mesh_name, payload, self.timeout)
        except p.MeshError as exc:
            return _error(json.dumps(exc.to_dict()))
        except Exception as exc:  # NATS itself failed (reconnecting, closed): say so, keep serving
            return _error(f"the mesh call failed: {type(exc).__name__}: {exc}")
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(result))],
            structured_content=result if isinstance(result, dict) else None)


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


async def serve_mcp(url: str, timeout: float, version: str) -> int:
    """Serve MCP on stdin/stdout until the client closes them."""
    await (await client.open_client(url)).close()  # fails fast, in the user's words
    nc = await connect([url], name="mesh-runtime mcp")  # long-lived: reconnects, as `up` does
    tools = MeshTools(nc, timeout)
    server: Server[Any] = Server("mesh-runtime", version=version,
                                 instructions="Each tool is an agent or pipeline of a NATS mesh.",
                                 on_list_tools=tools.list_tools, on_call_tool=tools.call_tool)
    print(f"mcp: serving the mesh at {url} on stdio", file=sys.stderr)
    try:
        async with stdio() as (lines, out), stdio_server(lines, out) as (read, write):  # type: ignore[arg-type]
            await server.run(read, write, server.create_initialization_options())
    finally:
        await nc.close()
    return 0

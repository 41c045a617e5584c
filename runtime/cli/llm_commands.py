"""Commands that hand the mesh to LLMs: `tools` (tool definitions) and `mcp` (an MCP server)."""

from __future__ import annotations

import argparse
import json
import sys

from runtime.cli.common import (
    Commands,
    add_command,
    client_url,
    duration_arg,
    nats_option,
    package_version,
    run_client,
)


def register(commands: Commands) -> None:
    tools = add_command(commands, "tools", _tools,
                        "print every invocable agent and pipeline as an LLM tool definition")
    tools.add_argument("--format", choices=("openai", "anthropic"), default="openai",
                       help="openai (function tools, the default) or anthropic")
    nats_option(tools)
    mcp = add_command(commands, "mcp", _mcp,
                      "serve the mesh's agents and pipelines as MCP tools on stdio")
    nats_option(mcp)
    mcp.add_argument("--timeout", default=30.0, type=duration_arg,
                     help="how long a tool call waits for the mesh (default 30s)")


def _tools(args: argparse.Namespace) -> int:
    from runtime.nats import client
    from runtime.nats.tooldefs import mesh_tools

    async def run() -> int:
        nc = await client.open_client(client_url(args))
        try:
            entries = await client.catalog(nc)
            if entries is None:
                print("error: this NATS server has no JetStream, so there is no catalog",
                      file=sys.stderr)
                return 1
            tools, warnings = await mesh_tools(nc, entries)
        finally:
            await nc.close()
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(json.dumps([t.to_format(args.format) for t in tools], indent=2))
        return 0

    return run_client(run)


def _mcp(args: argparse.Namespace) -> int:
    from runtime.serve.mcp_bridge import serve_mcp

    return run_client(lambda: serve_mcp(client_url(args), args.timeout, package_version()))


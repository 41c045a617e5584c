"""Catalog entries as LLM tool definitions, in the shapes OpenAgentMesh 0.2 gives.

OpenAgentMesh's `AgentContract.to_openai_tool()` / `to_anthropic_tool()`: the name with
dots made underscores (it must match `^[a-zA-Z0-9_-]{1,64}$`), the description with
`\\nReturns: <output fields>.` when the output schema lists properties, and the input
schema (an empty object schema when there is none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client

from runtime.nats.registry import card_skill, mapping, registry_card

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
FORMATS = ("openai", "anthropic")


@dataclass(frozen=True)
class Tool:
    """One invocable name of the mesh, as a provider-neutral tool."""

    name: str           # the tool's name: the mesh name with dots made underscores
    mesh_name: str      # what to call on the mesh
    description: str
    input_schema: dict[str, Any]
    streaming: bool

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": self.input_schema}}

    def to_anthropic(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "input_schema": self.input_schema}

    def to_format(self, format_name: str) -> dict[str, Any]:
        return self.to_openai() if format_name == "openai" else self.to_anthropic()


def tool_name(name: str) -> str | None:
    """The tool name for a mesh name, or None when LLM APIs would refuse it (too long)."""
    sanitized = name.replace(".", "_")
    return sanitized if _TOOL_NAME.match(sanitized) else None


def description_of(description: str, output_schema: Any) -> str:
    properties = output_schema.get("properties") if isinstance(output_schema, dict) else None
    if not properties or not isinstance(properties, dict):
        return description
    return f"{description}\nReturns: {', '.join(properties)}."


def tool_from_card(name: str, card: dict[str, Any] | None, entry: dict[str, Any]) -> Tool:
    skill = card_skill(card)
    input_schema = mapping(skill.get("inputSchema")) or {"type": "object", "properties": {}}
    return Tool(name=tool_name(name) or name, mesh_name=name,
                description=description_of(str(entry.get("description", "")),
                                           skill.get("outputSchema")),
                input_schema=input_schema, streaming=bool(entry.get("streaming")))


async def mesh_tools(nc: Client, entries: list[dict[str, Any]]) -> tuple[list[Tool], list[str]]:
    """A tool per invocable entry, and a warning per entry left out (bad or clashing name)."""
    tools: list[Tool] = []
    warnings: list[str] = []
    taken: dict[str, str] = {}
    for entry in entries:
        name = str(entry.get("name", ""))
        if not entry.get("invocable", True):
            continue
        sanitized = tool_name(name)
        if sanitized is None:
            warnings.append(f"'{name}' left out: a tool name must match {_TOOL_NAME.pattern} "
                            "once dots are made underscores")
            continue
        if sanitized in taken:
            warnings.append(f"'{name}' left out: its tool name '{sanitized}' is taken by "
                            f"'{taken[sanitized]}'")
            continue
        taken[sanitized] = name
        tools.append(tool_from_card(name, await registry_card(nc, name), entry))
    return tools, warnings

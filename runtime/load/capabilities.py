"""Load-time view of capabilities: who declares each one, and where their inputs disagree."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from runtime.core.issues import DocPath
from runtime.load.mesh import AgentDef, ExternalDef


def declared(agents: Mapping[str, AgentDef],
             external: Mapping[str, ExternalDef]) -> dict[str, list[tuple[DocPath, Any]]]:
    """capability -> (where an agent declares it, that agent's input schema), in file order."""
    found: dict[str, list[tuple[DocPath, Any]]] = {}
    for section, defs in (("agents", agents), ("external", external)):
        for name, definition in defs.items():
            offered = definition.spec.capabilities
            schema = definition.input.document if definition.input is not None else None
            for index, capability in enumerate(offered):
                where: DocPath = (section, name, "capabilities", index)
                found.setdefault(capability, []).append((where, schema))
    return found


def schema_warnings(found: dict[str, list[tuple[DocPath, Any]]]) -> Iterator[tuple[DocPath, str]]:
    """A warning at each declaration whose input schema differs from the first declarer's."""
    for capability, declarations in sorted(found.items()):
        (first, schema), *others = declarations
        for where, other in others:
            if _text(other) != _text(schema):
                yield where, (f"capability '{capability}' is also declared by {first[1]} with a "
                              "different input schema: a call by capability reaches either")


def _text(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True, default=repr)

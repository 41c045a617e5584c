"""JSON Schema's structure: which keywords exist and where the subschemas are.

Shared by the load-time lint of payload schemas and the pipelines' checks of what a step
can give and take; both look at schemas as data, never validate with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

SchemaPath = tuple[str | int, ...]

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_VALUES = ("additionalProperties", "items", "not", "if", "then", "else", "contains",
                  "propertyNames", "unevaluatedItems", "unevaluatedProperties", "additionalItems",
                  "contentSchema")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")

# Every keyword of Draft 2020-12 and the drafts before it that the validators know.
KEYWORDS = frozenset({
    "$schema", "$id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary",
    "$comment", "$defs", "$recursiveRef", "$recursiveAnchor", "definitions", "dependencies",
    *_SCHEMA_MAPS, *_SCHEMA_VALUES, *_SCHEMA_LISTS,
    "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
    "uniqueItems", "maxContains", "minContains", "maxProperties", "minProperties", "required",
    "dependentRequired", "format", "contentEncoding", "contentMediaType", "title",
    "description", "default", "deprecated", "readOnly", "writeOnly", "examples",
})


_KINDS = {**dict.fromkeys(_SCHEMA_MAPS, "map"), **dict.fromkeys(_SCHEMA_VALUES, "value"),
          **dict.fromkeys(_SCHEMA_LISTS, "list"), "items": "value or list"}


def subschemas(schema: Any, path: SchemaPath = ()) -> Iterator[tuple[SchemaPath, dict[str, Any]]]:
    """Every schema object in `schema` (itself first) with its path; data (enum, const,
    default, examples) is never taken for a schema."""
    stack: list[tuple[SchemaPath, Any]] = [(path, schema)]
    while stack:
        here, node = stack.pop()
        if not isinstance(node, dict):
            continue
        yield here, node
        found: list[tuple[SchemaPath, Any]] = []
        for key, value in node.items():
            kind = _KINDS.get(key)
            if kind is None:
                continue
            if isinstance(value, dict) and kind == "map":
                found += [((*here, key, name), sub) for name, sub in value.items()]
            elif isinstance(value, list) and kind in ("list", "value or list"):
                found += [((*here, key, i), sub) for i, sub in enumerate(value)]
            elif isinstance(value, dict) and kind != "map":
                found.append(((*here, key), value))
        stack.extend(reversed(found))  # document order

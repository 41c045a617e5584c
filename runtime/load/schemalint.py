"""Mistakes in a payload schema that are valid JSON Schema but cannot be what was meant.

- A `required` property that `additionalProperties: false` forbids (it is not under
  `properties` or a `patternProperties` pattern): no value can ever match, so every request
  (or every result) would be refused. An error.
- An unknown keyword that looks like a typo of a known one (`requried`, `propertys`, `ref`
  for `$ref`): JSON Schema ignores unknown keywords, so it checks nothing. A warning.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from runtime.core.schemawalk import KEYWORDS, SchemaPath, subschemas

_CHOICES = sorted(KEYWORDS)
_CUTOFF = 0.75  # `ref` -> `$ref` is 0.86, `requried` -> `required` 0.88


@dataclass(frozen=True)
class Finding:
    """One lint finding inside a schema: where, what, and how bad."""

    path: SchemaPath
    message: str
    severity: str  # "error" or "warning"
    on_key: bool = False


def lint_schema(schema: Any) -> tuple[Finding, ...]:
    """Every finding in `schema` and its subschemas, in document order."""
    found: list[Finding] = []
    for path, node in subschemas(schema):
        found.extend(_typos(node, path))
        found.extend(_forbidden_required(node, path))
    return tuple(found)


def _typos(node: dict[str, Any], path: SchemaPath) -> Iterator[Finding]:
    for key in node:
        if not isinstance(key, str) or key in KEYWORDS or key.startswith("x-"):
            continue
        close = difflib.get_close_matches(key, _CHOICES, n=1, cutoff=_CUTOFF)
        if not close and key.lower() in {k.lower() for k in KEYWORDS}:
            close = [k for k in _CHOICES if k.lower() == key.lower()]
        if close:
            yield Finding((*path, key), f"unknown keyword '{key}' (did you mean '{close[0]}'?): "
                          "JSON Schema ignores unknown keywords, so it checks nothing",
                          "warning", on_key=True)


def _forbidden_required(node: dict[str, Any], path: SchemaPath) -> Iterator[Finding]:
    required = node.get("required")
    if node.get("additionalProperties") is not False or not isinstance(required, list):
        return
    properties = node.get("properties")
    named = set(properties) if isinstance(properties, dict) else set()
    patterns = node.get("patternProperties")
    patterns = list(patterns) if isinstance(patterns, dict) else []
    for index, name in enumerate(required):
        if not isinstance(name, str) or name in named or any(_matches(p, name) for p in patterns):
            continue
        hint = _did_you_mean(name, named)
        yield Finding((*path, "required", index),
                      f"'{name}' is required, but additionalProperties: false forbids it (it is "
                      f"not under properties){hint}: no value can ever match this schema",
                      "error")


def _matches(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return True  # an ECMA-only pattern: it might match, so say nothing


def _did_you_mean(word: str, choices: set[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""

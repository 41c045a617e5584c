"""Filling in the `default`s a payload schema declares, compiled once per schema."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

DefaultsFiller = Callable[[Any], None]


def compile_defaults(schema: Any) -> DefaultsFiller | None:
    """A function that fills `default`s of object properties in place; None if none exist."""
    if not isinstance(schema, dict):
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.endswith("#") and isinstance(schema.get("$defs"), dict):
        # A whole file kept as an embedded resource (see SchemaResolver._include).
        for embedded in schema["$defs"].values():
            if isinstance(embedded, dict) and embedded.get("$id") == ref[:-1]:
                return compile_defaults(embedded)
    if isinstance(schema.get("allOf"), list):
        parts = [f for part in schema["allOf"] if (f := compile_defaults(part)) is not None]
        own = compile_defaults({k: v for k, v in schema.items() if k != "allOf"})
        parts += [own] if own else []
        if parts:
            def fill_all(instance: Any) -> None:
                for part in parts:
                    part(instance)
            return fill_all
    props = schema.get("properties")
    if not isinstance(props, dict):
        return None
    defaults = {k: v["default"] for k, v in props.items() if isinstance(v, dict) and "default" in v}
    nested = {k: f for k, v in props.items() if (f := compile_defaults(v)) is not None}
    if not defaults and not nested:
        return None
    mutable = {k for k, v in defaults.items() if isinstance(v, dict | list)}

    def fill(instance: Any) -> None:
        if not isinstance(instance, dict):
            return
        for key, value in defaults.items():
            if key not in instance:
                instance[key] = copy.deepcopy(value) if key in mutable else value
        for key, inner in nested.items():
            if key in instance:
                inner(instance[key])

    return fill

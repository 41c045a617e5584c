"""Pydantic's validation errors in a mesh.yaml author's words, at the right place."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel

from runtime.core.issues import DocPath
from runtime.load import model
from runtime.pipeline import spec as pipeline_spec


def _user_keys() -> list[str]:
    """Every key a mesh.yaml author can write, as spelled in the file (aliases included)."""
    keys = set()
    for module in (model, pipeline_spec):
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, BaseModel):
                for name, info in cls.model_fields.items():
                    keys.add(info.alias or name)
    return sorted(keys)


_VOCABULARY = _user_keys()  # for "did you mean" hints on unknown keys


def explain(error: Any, data: Any) -> tuple[DocPath, bool, str]:
    """(path in the document, whether to point at the key, message) for a pydantic error."""
    path: list[str | int] = []
    node = data
    on_key = False
    loc = list(error["loc"])
    for i, part in enumerate(loc):
        if part == "[key]":
            on_key = True
            break
        if (isinstance(node, dict) and part in node) or (
                isinstance(node, list) and isinstance(part, int) and part < len(node)):
            path.append(part)
            node = node[part]
        elif i == len(loc) - 1:
            path.append(part)  # the missing or unknown key itself
    kind = error["type"]
    key = path[-1] if path else ""
    if kind == "missing":
        return tuple(path[:-1]), True, f"missing required key '{key}'"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(key), _VOCABULARY, n=1, cutoff=0.75)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return tuple(path), True, f"unknown key '{key}'{hint}"
    if kind == "literal_error" and path == ["version"]:
        return ("version",), False, (
            f"unsupported version {error['input']!r}: this mesh-runtime reads version 1")
    message = error["msg"].removeprefix("Value error, ")
    if kind in {"dict_type", "model_type"}:
        message = "expected a mapping (key: value pairs)"
    return tuple(path), on_key, message

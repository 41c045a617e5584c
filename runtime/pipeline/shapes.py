"""What a value in a pipeline can be, read from schemas, to prove mistakes at load time.

A Shape over-approximates: every value the schemas allow is in it, maybe more (keywords
that only narrow, such as `allOf`, `minLength` or `if`, are ignored). So a field that cannot
exist in a Shape, or a type that no alternative has, is proven impossible; when a Shape
knows nothing (`anything`), nothing is claimed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
_NULL = frozenset({"null"})


@dataclass(frozen=True)
class Schema:
    """The values one schema allows; `root` is the resource its `#...` refs point into."""

    schema: Any
    root: Any
    filled: bool = False  # `default`s are filled in (a served pipeline's input)


@dataclass(frozen=True)
class Record:
    """An object with exactly these fields (a parallel step's result: one per branch)."""

    fields: tuple[tuple[str, Shape], ...]
    what: str  # how a message names it: "step 'info' (parallel)"


@dataclass(frozen=True)
class ListOf:
    item: Shape


@dataclass(frozen=True)
class Const:
    value: Any


Alternative = Schema | Record | ListOf | Const


@dataclass(frozen=True)
class Shape:
    """The values something can be: any of `alternatives`; None is anything at all."""

    alternatives: tuple[Alternative, ...] | None

    def types(self) -> frozenset[str] | None:
        """Every JSON type it may have ('integer' within 'number'), or None if unknown."""
        if self.alternatives is None:
            return None
        found: set[str] = set()
        for alternative in self.alternatives:
            types = _types(alternative)
            if types is None:
                return None
            found |= types
        return frozenset(found)

    def values(self) -> list[Any] | None:
        """Every value it may be, when only a few are possible (const, enum), else None."""
        found: list[Any] = []
        for alternative in self.alternatives or [Schema({}, None)]:
            if isinstance(alternative, Const):
                found.append(alternative.value)
            elif isinstance(alternative, Schema) and "const" in alternative.schema:
                found.append(alternative.schema["const"])
            elif isinstance(alternative, Schema) and isinstance(alternative.schema.get("enum"),
                                                                list):
                found += alternative.schema["enum"]
            else:
                return None
        return found

    def field(self, name: str) -> tuple[Shape, bool]:
        """The shape of `.name` read from this, and whether it can be there at all."""
        if self.alternatives is None:
            return ANYTHING, True
        found: list[Alternative] = []
        possible = False
        for alternative in self.alternatives:
            shape, there = _field(alternative, name)
            if shape.alternatives is None:
                return ANYTHING, True
            found += shape.alternatives
            possible = possible or there
        return Shape(tuple(found)), possible


ANYTHING = Shape(None)
NULL = Shape((Const(None),))


def of_schema(schema: Any, root: Any = None, *, filled: bool = False) -> Shape:
    """The shape of a (bundled) schema document or subschema; `filled` when the runtime
    fills in its `default`s first (so a property with one is never absent)."""
    if schema is None:
        return ANYTHING
    return Shape(tuple(_expand(schema, schema if root is None else root, 0, filled)))


def union(shapes: Iterable[Shape]) -> Shape:
    found: list[Alternative] = []
    for shape in shapes:
        if shape.alternatives is None:
            return ANYTHING
        found += shape.alternatives
    return Shape(tuple(found))


def _expand(schema: Any, root: Any, depth: int, filled: bool) -> list[Alternative]:
    """A schema as alternatives: `$ref`s followed, anyOf/oneOf split; [] if it allows nothing."""
    if depth > 20:
        return [Schema({}, root, filled)]  # a deep or looping chain of refs: claim nothing
    if schema is False:
        return []
    if not isinstance(schema, dict) or not schema:  # true, {} or not a schema: anything
        return [Schema({}, root, filled)]
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = _deref(ref, schema, root)
        if target is None:
            return [Schema({}, root, filled)]
        return _expand(*target, depth + 1, filled)
    for key in ("anyOf", "oneOf"):
        members = schema.get(key)
        if isinstance(members, list) and "type" not in schema:
            return [a for member in members for a in _expand(member, root, depth + 1, filled)]
    return [Schema(schema, root, filled)]


def _deref(ref: str, node: dict[str, Any], root: Any) -> tuple[Any, Any] | None:
    base, _, pointer = ref.partition("#")
    if base:  # a file kept as an embedded resource (see the schema bundler)
        root = next((d for d in _embedded(node, root) if d.get("$id") == base), None)
        if root is None:
            return None
    target = root
    for part in (p for p in pointer.split("/") if p):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            return None
    return target, root


def _embedded(node: dict[str, Any], root: Any) -> list[dict[str, Any]]:
    found = []
    for holder in (node, root):
        defs = holder.get("$defs") if isinstance(holder, dict) else None
        if isinstance(defs, dict):
            found += [d for d in defs.values() if isinstance(d, dict)]
    return found


def _types(alternative: Alternative) -> frozenset[str] | None:
    if isinstance(alternative, Const):
        return frozenset({json_type(alternative.value)})
    if isinstance(alternative, Record):
        return frozenset({"object"})
    if isinstance(alternative, ListOf):
        return frozenset({"array"})
    schema = alternative.schema
    declared = schema.get("type")
    if isinstance(declared, str):
        declared = [declared]
    if isinstance(declared, list) and all(t in TYPES for t in declared):
        return frozenset(declared)
    if "const" in schema:
        return frozenset({json_type(schema["const"])})
    if isinstance(schema.get("enum"), list):
        return frozenset(json_type(v) for v in schema["enum"])
    return None


def _field(alternative: Alternative, name: str) -> tuple[Shape, bool]:
    if isinstance(alternative, Record):
        for field, shape in alternative.fields:
            if field == name:
                return shape, True
        return NULL, False
    if isinstance(alternative, ListOf):
        return NULL, False
    if isinstance(alternative, Const):
        value = alternative.value
        if isinstance(value, dict) and name in value:
            return Shape((Const(value[name]),)), True
        return NULL, False
    types = _types(alternative)
    if types is not None and "object" not in types:
        return NULL, False  # reading a field of a string or a list gives null
    shape, there = _object_field(alternative, name)
    if types is None or types != {"object"}:
        shape = union([shape, NULL])  # the value may be something else, whose field is null
    return shape, there


def _object_field(alternative: Schema, name: str) -> tuple[Shape, bool]:
    schema, root = alternative.schema, alternative.root
    properties = schema.get("properties")
    if isinstance(properties, dict) and name in properties:
        declared = properties[name]
        shape = of_schema(declared, root, filled=alternative.filled)
        required = schema.get("required")
        defaulted = alternative.filled and isinstance(declared, dict) and "default" in declared
        if not (isinstance(required, list) and name in required) and not defaulted:
            shape = union([shape, NULL])  # absent reads as null
        return shape, True
    patterns = schema.get("patternProperties")
    if isinstance(patterns, dict) and any(_may_match(p, name) for p in patterns):
        return ANYTHING, True
    extra = schema.get("additionalProperties")
    if extra is False:
        return NULL, False
    if isinstance(extra, dict):
        return union([of_schema(extra, root, filled=alternative.filled), NULL]), True
    return ANYTHING, True


def field_names(shape: Shape) -> list[str]:
    """The fields its alternatives name, for a did-you-mean."""
    names: set[str] = set()
    for alternative in shape.alternatives or ():
        if isinstance(alternative, Record):
            names.update(field for field, _ in alternative.fields)
        elif isinstance(alternative, Schema) and isinstance(alternative.schema, dict):
            properties = alternative.schema.get("properties")
            names.update(properties if isinstance(properties, dict) else ())
    return sorted(names)


def _may_match(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return True


def json_type(value: Any) -> str:
    """The JSON type name of a Python value parsed from JSON or YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"

"""Payload schemas are read from local files only: loading never touches the network.

Both validators would otherwise fetch what a schema names: jsonschema-rs retrieves a
`$ref` to `http://...` while compiling and a `$schema` it does not know while checking
the meta-schema (a hung URL held a load for 31 s), and Python's jsonschema retrieves
remote `$ref`s too. So a `$ref` with a URI scheme and an unknown `$schema` are errors
found before either validator runs, and jsonschema-rs gets a retriever that refuses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from runtime.core.issues import DocPath

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")  # `http:`, `file:`, `urn:`...
_REF_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")
_KEYS = frozenset((*_REF_KEYS, "$schema"))
_SPELL_OUT = "https://json-schema.org/draft/2020-12/schema"


def remote_problems(schema: Any, path: DocPath = ()) -> Iterator[tuple[DocPath, str]]:
    """(path, message) for every reference in `schema` that could only be fetched."""
    if not path and not _mentions_uris(schema):
        return  # nothing that refers anywhere: the common case, found in one quick pass
    if isinstance(schema, list):
        for index, item in enumerate(schema):
            yield from remote_problems(item, (*path, index))
        return
    if not isinstance(schema, dict):
        return
    for key in _REF_KEYS:
        ref = schema.get(key)
        if isinstance(ref, str) and _SCHEME.match(ref):
            yield (*path, key), (
                f"{key} '{ref}' is a URI, and schemas are never fetched: only files (like "
                "schemas/ticket.json, relative to the file that refers to them) and '#...' "
                "references are read; save the schema as a file and refer to that")
    dialect = schema.get("$schema")
    if isinstance(dialect, str) and not known_dialect(dialect):
        yield (*path, "$schema"), (
            f"unknown $schema '{dialect}': name a JSON Schema draft (like {_SPELL_OUT}); "
            "meta-schemas are never fetched")
    for key, value in schema.items():
        if key not in ("enum", "const", "default", "examples"):  # data, not schemas
            yield from remote_problems(value, (*path, key))


def _mentions_uris(schema: Any) -> bool:
    """Whether any mapping in `schema` has a key that may name something outside it."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if not _KEYS.isdisjoint(node):
                return True
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))
    return False


def known_dialect(uri: str) -> bool:
    """Whether `uri` names a JSON Schema draft both validators know without fetching."""
    if "draft-03" in uri:
        return False  # Python's jsonschema knows it; jsonschema-rs does not
    from referencing.jsonschema import UnknownDialect, specification_with  # only for $schema

    try:
        specification_with(uri)
    except UnknownDialect:
        return False
    return True


def refuse_retrieval(uri: str) -> Any:
    """jsonschema-rs's retriever: nothing outside the compiled document is ever fetched."""
    raise ValueError(f"'{uri}' is not fetched: schemas are read from local files only")

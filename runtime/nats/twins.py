"""Twins: two `up` processes serving one name with different definitions.

Each catalog entry our runtime writes says which definition its content describes
(`x-definition`: a hash of the input and output schemas) and which definition each
serving instance has (`x-definitions`: instance id -> {"schema": hash, "up": origin}).
So an `up` that starts can tell that another `up` serves one of its names differently
(a warning naming both instances), and when the instance whose definition the entry
shows stops, a live one writes its own back. Workers of one `up` share an origin: a
reload that changes a schema swaps them over without a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from typing import Any

from runtime.load.mesh import Endpoint
from runtime.nats.records import INSTANCES

DEFINITION = "x-definition"
DEFINITIONS = "x-definitions"
ORIGIN = f"{socket.gethostname()}:{os.getppid()}"  # a worker's `up`: its supervisor


def schema_hash(endpoint: Endpoint) -> str:
    """What two definitions of one name must share to answer callers alike."""
    shape = {"input": endpoint.input.document if endpoint.input is not None else None,
             "output": endpoint.output.document if endpoint.output is not None else None,
             "streaming": endpoint.streaming}
    text = json.dumps(shape, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def definitions(entry: dict[str, Any] | None) -> dict[str, dict[str, str]]:
    """The entry's instance -> {"schema", "up"}, only for instances it lists as serving."""
    if entry is None:
        return {}
    raw = entry.get(DEFINITIONS)
    serving = entry.get(INSTANCES)
    if not isinstance(raw, dict) or not isinstance(serving, list):
        return {}
    found = {}
    for instance in serving:
        value = raw.get(instance)
        if isinstance(value, dict) and isinstance(value.get("schema"), str):
            found[instance] = {"schema": value["schema"], "up": str(value.get("up", ""))}
    return found


def joined(existing: dict[str, Any] | None, ours: dict[str, Any], serving: list[str],
           instance: str, schema: str) -> tuple[dict[str, Any], list[str]]:
    """Our entry with us added to `serving`, and the instances of other `up`s that serve
    the name with another definition (twins)."""
    known = definitions(existing)
    twins = sorted(i for i, d in known.items()
                   if i != instance and d["schema"] != schema and d["up"] != ORIGIN)
    known[instance] = {"schema": schema, "up": ORIGIN}
    entry = {**ours, INSTANCES: serving, DEFINITION: schema,
             DEFINITIONS: {i: known[i] for i in serving if i in known}}
    return entry, twins


def without(entry: dict[str, Any], others: list[str]) -> dict[str, Any]:
    """The entry served only by `others` (the rest stopped or died)."""
    known = definitions(entry)
    changed = {**entry, INSTANCES: others}
    if DEFINITIONS in entry:
        changed[DEFINITIONS] = {i: known[i] for i in others if i in known}
    return changed


def shows_the_gone(entry: dict[str, Any]) -> bool:
    """Whether the entry's content is the definition of an instance no longer serving it
    (the twin it came from stopped): a live instance should write its own back."""
    shown = entry.get(DEFINITION)
    known = definitions(entry)
    return isinstance(shown, str) and bool(known) and shown not in {
        d["schema"] for d in known.values()}

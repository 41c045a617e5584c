"""Twins: two `up` processes serving one name with different definitions.

Each catalog entry our runtime writes says whose definition its content is:
`x-definition: "<schema hash>@<instance>"`, the hash of the input and output schemas of
the instance that wrote it (one short string: the catalog is one KV value, and every
byte per entry counts). So an `up` that starts can tell that the instance whose entry it
finds serves the name differently (a warning naming both), and when that instance stops,
a live one sees that the entry shows the gone and writes its own back.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from runtime.load.mesh import Endpoint
from runtime.nats.records import INSTANCES

DEFINITION = "x-definition"


def schema_hash(endpoint: Endpoint) -> str:
    """What two definitions of one name must share to answer callers alike."""
    shape = {"input": endpoint.input.document if endpoint.input is not None else None,
             "output": endpoint.output.document if endpoint.output is not None else None,
             "streaming": endpoint.streaming}
    text = json.dumps(shape, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _written_by(entry: dict[str, Any] | None) -> tuple[str, str] | None:
    """(schema hash, instance) of the entry's content, if our runtime wrote it."""
    value = (entry or {}).get(DEFINITION)
    if not isinstance(value, str) or "@" not in value:
        return None
    schema, _, instance = value.partition("@")
    return schema, instance


def joined(existing: dict[str, Any] | None, ours: dict[str, Any], serving: list[str],
           instance: str, schema: str) -> tuple[dict[str, Any], list[str]]:
    """Our entry with us added to `serving`, and the instance still serving the name whose
    entry we replace, if its definition differs from ours (a twin)."""
    written = _written_by(existing)
    twins = []
    if written is not None and written[1] != instance and written[0] != schema and (
            written[1] in serving):
        twins.append(written[1])
    return {**ours, INSTANCES: serving, DEFINITION: f"{schema}@{instance}"}, twins


def without(entry: dict[str, Any], others: list[str]) -> dict[str, Any]:
    """The entry served only by `others` (the rest stopped or died)."""
    return {**entry, INSTANCES: others}


def shows_the_gone(entry: dict[str, Any]) -> bool:
    """Whether the entry's content is the definition of an instance no longer serving it
    (a twin that stopped): a live instance should write its own back."""
    written = _written_by(entry)
    serving = entry.get(INSTANCES)
    return written is not None and isinstance(serving, list) and written[1] not in serving

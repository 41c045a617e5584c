"""Reading registry cards as a client, for describe and tools: any process may write them."""

from __future__ import annotations

import json
from typing import Any

from nats.aio.client import Client

from runtime.core import protocol as p


async def _kv_json(nc: Client, bucket: str, key: str) -> Any:
    """The JSON value at `key`, or None when the bucket, the key or JetStream is missing."""
    try:
        kv = await nc.jetstream(timeout=3).key_value(bucket)
        entry = await kv.get(key)
        return json.loads(entry.value or b"null")
    except Exception:  # missing bucket or key, no JetStream, or not JSON: nothing to show
        return None


async def registry_card(nc: Client, name: str) -> dict[str, Any] | None:
    """The A2A-style card of `name` in mesh-registry, or None."""
    card = await _kv_json(nc, p.REGISTRY_BUCKET, name)
    return card if isinstance(card, dict) else None


def mapping(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else {}: cards are written by any process on the bus."""
    return value if isinstance(value, dict) else {}


def card_skill(card: dict[str, Any] | None) -> dict[str, Any]:
    """The card's first skill (OpenAgentMesh writes one per agent), or {}."""
    skills = mapping(card).get("skills")
    return mapping(skills[0]) if isinstance(skills, list) and skills else {}


def card_schemas(card: dict[str, Any] | None) -> tuple[Any, Any]:
    """(input schema, output schema) from a card; a streaming agent's output is its chunk."""
    skill = card_skill(card)
    output = skill.get("outputSchema") or mapping(mapping(card).get("x-agentmesh")).get(
        "chunk_schema")
    return _schema(skill.get("inputSchema")), _schema(output)


def _schema(value: Any) -> Any:
    return value if isinstance(value, dict | bool) else None

"""Everything `ls` lists: the catalog key, plus the registry's cards it had no room for.

OpenAgentMesh's catalog is one KV value, capped by the server's max_payload; a bigger
mesh keeps every card in `mesh-registry`, so names missing from the catalog key are
listed from their cards.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.nats.client import catalog
from runtime.nats.registry import mapping

_READS_AT_ONCE = 256  # card reads in flight at a time


async def full_catalog(nc: Client) -> list[dict[str, Any]] | None:
    """The catalog's entries and the registry-only names, by name; None without JetStream."""
    entries = await catalog(nc)
    if entries is None:
        return None
    js = nc.jetstream(timeout=5)
    try:
        registry = await js.key_value(p.REGISTRY_BUCKET)
        keys = await registry.keys()
    except Exception:  # no registry, or no keys in it (nats-py raises for an empty bucket)
        return entries
    listed = {e.get("name") for e in entries}
    missing = sorted(k for k in keys if k not in listed)
    if not missing:
        return entries
    gate = asyncio.Semaphore(_READS_AT_ONCE)

    async def card(name: str) -> dict[str, Any] | None:
        async with gate:
            try:
                value = (await registry.get(name)).value
                data = json.loads(value or b"null")
            except Exception:
                return None
        return entry_of(name, data) if isinstance(data, dict) else None

    found = [e for e in await asyncio.gather(*(card(n) for n in missing)) if e]
    return sorted(entries + found, key=lambda e: str(e.get("name")))


def entry_of(name: str, card: dict[str, Any]) -> dict[str, Any]:
    """A catalog entry made from a registry card (the fields the catalog holds)."""
    capabilities = mapping(card.get("capabilities"))
    tags = mapping(card.get("x-agentmesh")).get("tags")
    tags = tags if isinstance(tags, list) else []
    return {"name": name, "description": str(card.get("description") or ""),
            "version": str(card.get("version") or ""), "tags": [str(t) for t in tags],
            "invocable": bool(capabilities.get("invocable", True)),
            "streaming": bool(capabilities.get("streaming", False)), "registry_only": True}


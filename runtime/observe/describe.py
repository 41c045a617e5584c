"""What `describe` (and the web page) show of one name: the catalog entry, the registry
card, who serves it and how it is doing, the way `status` works it out."""

from __future__ import annotations

from typing import Any

from runtime.nats.liveness import instances_of, is_alive, open_instances, read_records
from runtime.nats.registry import card_schemas, mapping, registry_card
from runtime.nats.status import gather_stats, summarize


async def describe(nc: Any, entry: dict[str, Any]) -> dict[str, Any]:
    """What `describe` shows: the catalog entry, the registry card, who serves it, its stats."""
    name = str(entry["name"])
    card = await registry_card(nc, name)
    input_schema, output_schema = card_schemas(card)
    extension = mapping(mapping(card).get("x-agentmesh"))
    capabilities = entry.get("capabilities") or extension.get("capabilities")
    tags = [t for t in entry["tags"] if isinstance(t, str)] if isinstance(
        entry.get("tags"), list) else []
    info: dict[str, Any] = {
        "name": name,
        "kind": "pipeline" if "pipeline" in tags else "agent",
        "description": str(entry.get("description", "")),
        "version": str(entry.get("version", "")),
        "tags": tags,
        "streaming": bool(entry.get("streaming")),
        "invocable": bool(entry.get("invocable", True)),
        "subject": str(extension.get("subject") or f"mesh.agent.{name}"),
    }
    if isinstance(capabilities, list) and capabilities:
        info["capabilities"] = [str(c) for c in capabilities]
    for key in ("triggers", "events"):  # another process wrote them: bounded, text only
        listed = entry.get(key)
        if isinstance(listed, list) and listed:
            info[key] = [str(item)[:200] for item in listed[:50]]
    info["input"] = input_schema
    info["output"] = output_schema
    info.update(await _serving(nc, name, entry))
    return info


async def _serving(nc: Any, name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """`instances` (with heartbeat records where `up` writes them) and `status` and `stats`,
    the way `mesh-runtime status` works them out."""
    ids = instances_of(entry)[:100]  # a hostile entry may list any number
    kv = await open_instances(nc.jetstream(timeout=3))
    records = await read_records(kv, set(ids)) if kv is not None and ids else {}
    instances = []
    for instance in ids:
        record = records.get(instance)
        instances.append({"id": instance} if record is None else {
            "id": instance, "live": is_alive(record), "host": record.get("host"),
            "pid": record.get("pid")})
    live = {i: r for i, r in records.items() if r is not None and is_alive(r)}
    # Wait for the STATS of this name's live instances only (else: until answers stop).
    answers = await gather_stats(nc, set(live) or None)
    rows = summarize([name], answers, live)  # a row for every name that answered
    row = next(r for r in rows if r.name == name)
    stats = {key: value for key, value in row.as_dict().items() if key not in ("name", "status")}
    # An entry with no `x-instances` was written by OpenAgentMesh: nothing here tells how it is.
    status = row.status if row.instances or "x-instances" in entry else "unknown"
    return {"instances": instances, "status": status, "stats": stats}

"""`mesh-runtime describe NAME`: one agent or pipeline, as the mesh knows it right now."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from runtime.cli.common import Commands, add_command, client_url, nats_option, run_client, suggest


def register(commands: Commands) -> None:
    describe = add_command(commands, "describe", _describe,
                           "show one agent or pipeline: catalog entry, schemas, instances, status")
    describe.add_argument("name")
    nats_option(describe)
    describe.add_argument("--json", action="store_true", help="print it as one JSON object")


def _describe(args: argparse.Namespace) -> int:
    from runtime.nats import client
    from runtime.nats.listing import full_catalog

    async def run() -> int:
        nc = await client.open_client(client_url(args))
        try:
            entries = await full_catalog(nc)
            if entries is None:
                print("error: this NATS server has no JetStream, so there is no catalog",
                      file=sys.stderr)
                return 1
            entry = next((e for e in entries if e.get("name") == args.name), None)
            if entry is None:
                print(f"error: no agent or pipeline named '{args.name}' in the catalog"
                      f"{suggest(args.name, [str(e.get('name')) for e in entries])}", file=sys.stderr)
                return 1
            info = await describe(nc, entry)
        finally:
            await nc.close()
        print(json.dumps(info, indent=2) if args.json else _text(info))
        return 0

    return run_client(run)


async def describe(nc: Any, entry: dict[str, Any]) -> dict[str, Any]:
    """What `describe` shows: the catalog entry, the registry card, who serves it, its stats."""
    from runtime.nats.registry import card_schemas, mapping, registry_card

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
    from runtime.nats.liveness import instances_of, is_alive, open_instances, read_records
    from runtime.nats.status import gather_stats, summarize

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


def _text(info: dict[str, Any]) -> str:
    kind = f"{info['kind']}, streaming" if info["streaming"] else info["kind"]
    lines = [f"{info['name']} ({kind}, version {info['version']})"]
    if info["description"]:
        lines.append(f"  {info['description']}")
    lines.append(f"subject:  {info['subject']}")
    lines.append(f"tags:     {', '.join(info['tags']) or '-'}")
    if info.get("capabilities"):
        lines.append(f"capabilities: {', '.join(info['capabilities'])}")
    for trigger in info.get("triggers", []):
        lines.append(f"trigger:  {trigger}")
    if info.get("events"):
        lines.append(f"events:   {', '.join(info['events'])} on {info['subject']}.events")
    stats = info["stats"]
    lines.append(f"status:   {info['status']}  ({stats['in_flight']} in flight, "
                 f"{stats['requests']} requests, {stats['errors']} errors, avg "
                 f"{stats['avg_ms']:.1f} ms, p99 {stats['p99_ms']:.1f} ms)")
    if stats["last_error"]:
        lines.append(f"last error: {stats['last_error']}")
    lines.append(f"instances: {len(info['instances'])}")
    for instance in info["instances"]:
        where = f"  {instance.get('host')} pid {instance.get('pid')}" if "host" in instance else ""
        state = ("live" if instance["live"] else "dead") if "live" in instance else "no heartbeat"
        lines.append(f"  {instance['id']}  {state}{where}")
    for label, key in (("input schema", "input"),
                       ("chunk schema" if info["streaming"] else "output schema", "output")):
        schema = info[key]
        lines.append(f"{label}:" + (" (none: anything)" if schema is None else ""))
        if schema is not None:
            lines.extend("  " + line for line in json.dumps(schema, indent=2).splitlines())
    return "\n".join(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", line) for line in lines)


# Text from the bus is shown, never obeyed: no terminal escapes from a hostile description.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

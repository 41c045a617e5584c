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

    async def run() -> int:
        nc = await client.open_client(client_url(args))
        try:
            entries = await client.catalog(nc)
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
    """What `describe` shows, from the catalog entry, the registry card and instance records."""
    from runtime.nats.registry import (
        card_schemas,
        instance_records,
        is_live,
        mapping,
        registry_card,
    )

    name = str(entry["name"])
    card = await registry_card(nc, name)
    input_schema, output_schema = card_schemas(card)
    listed = entry.get("x-instances")
    ids = [str(i) for i in listed] if isinstance(listed, list) else []
    records = await instance_records(nc, ids)
    instances = [{"id": i, **({"live": is_live(records[i]), "host": records[i].get("host"),
                               "pid": records[i].get("pid")} if i in records else {})}
                 for i in ids]
    extension = mapping(mapping(card).get("x-agentmesh"))
    capabilities = entry.get("capabilities") or extension.get("capabilities")
    tags = [str(t) for t in entry.get("tags") or [] if isinstance(t, str)] if isinstance(
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
    info["input"] = input_schema
    info["output"] = output_schema
    info["instances"] = instances
    info["status"] = _status(instances)
    return info


def _status(instances: list[dict[str, Any]]) -> str:
    """`online` when an instance's heartbeat is live; `offline` when every record is stale;
    `listed` when no instance writes heartbeats (the catalog is all there is to go on)."""
    known = [i for i in instances if "live" in i]
    if any(i["live"] for i in known):
        return "online"
    if known and len(known) == len(instances):
        return "offline"
    return "listed" if instances else "offline"


def _text(info: dict[str, Any]) -> str:
    kind = f"{info['kind']}, streaming" if info["streaming"] else info["kind"]
    lines = [f"{info['name']} ({kind}, version {info['version']})"]
    if info["description"]:
        lines.append(f"  {info['description']}")
    lines.append(f"subject:  {info['subject']}")
    lines.append(f"tags:     {', '.join(info['tags']) or '-'}")
    if info.get("capabilities"):
        lines.append(f"capabilities: {', '.join(map(str, info['capabilities']))}")
    lines.append(f"status:   {info['status']}")
    lines.append(f"instances: {len(info['instances'])}")
    for instance in info["instances"]:
        where = f"  {instance.get('host')} pid {instance.get('pid')}" if "host" in instance else ""
        state = ("live" if instance["live"] else "dead") if "live" in instance else "listed"
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

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
    from runtime.observe.describe import describe

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

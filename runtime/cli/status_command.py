"""`mesh-runtime status [NAME] [--json]`: every agent and pipeline, and how it is doing."""

from __future__ import annotations

import argparse
import json
import sys

from runtime.cli.common import (
    Commands,
    add_command,
    client_url,
    nats_option,
    run_client,
    suggest,
)

COLUMNS = ("NAME", "STATUS", "INSTANCES", "IN_FLIGHT", "REQUESTS", "ERRORS", "AVG_MS",
           "P99_MS", "LAST_ERROR")


def register(commands: Commands) -> None:
    status = add_command(commands, "status", _status,
                         "each agent and pipeline: idle, busy, error or offline, with its stats")
    status.add_argument("name", nargs="?", help="only this agent or pipeline")
    nats_option(status)
    status.add_argument("--json", action="store_true", help="print a JSON list")


def _status(args: argparse.Namespace) -> int:
    from runtime.nats import client
    from runtime.nats.listing import full_catalog
    from runtime.nats.status import gather_stats, live_instances, summarize

    async def run() -> int:
        nc = await client.open_client(client_url(args))
        try:
            listed = await full_catalog(nc) or []
            live = await live_instances(nc)
            answers = await gather_stats(nc, live)
        finally:
            await nc.close()
        rows = summarize([str(e.get("name")) for e in listed], answers, live)
        if args.name is not None:
            known = [r.name for r in rows]
            rows = [r for r in rows if r.name == args.name]
            if not rows:
                print(f"error: no agent or pipeline named '{args.name}' is listed or served"
                      f"{suggest(args.name, known)}", file=sys.stderr)
                return 1
        if args.json:
            print(json.dumps([r.as_dict() for r in rows], indent=2))
            return 0
        if not rows:
            print("(nothing is listed or served)")
            return 0
        table = [COLUMNS] + [(
            r.name, r.status, str(r.instances), str(r.in_flight), str(r.requests),
            str(r.errors), f"{r.avg_ms:.1f}", f"{r.p99_ms:.1f}", _cut(r.last_error),
        ) for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS) - 1)]
        for row in table:
            print(("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False))
                   + "  " + row[-1]).rstrip())
        return 0

    return run_client(run)


def _cut(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."

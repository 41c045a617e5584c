"""Client commands that talk to a running mesh over NATS: call, ls."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from runtime.cli.common import (
    Commands,
    add_command,
    client_url,
    did_you_mean,
    duration_arg,
    nats_option,
    read_payload,
    run_client,
)
from runtime.core import protocol as p
from runtime.core.names import check_name
from runtime.core.text import escape, is_request_id


def register(commands: Commands) -> None:
    call = add_command(commands, "call", _call, "call an agent or pipeline and print its JSON reply")
    call.add_argument("name")
    call.add_argument("payload", nargs="?",
                      help="JSON, or - to read stdin (read when piped; default {})")
    nats_option(call)
    call.add_argument("--timeout", default=30.0, type=duration_arg,
                      help="how long to wait: 5 (seconds), 250ms, 5s, 2m (default 30s)")
    call.add_argument("--stream", action="store_true",
                      help="stream (found from the catalog when it is on)")
    call.add_argument("--capability", action="store_true",
                      help="NAME is a capability: any one agent offering it answers")
    call.add_argument("--request-id", metavar="ID", help="send this request id (a pipeline's "
                      "run id: mesh-runtime runs show ID); 1-128 of A-Z a-z 0-9 _ -")
    call.add_argument("--async", dest="run_async", action="store_true",
                      help="start the pipeline and print its run id at once "
                      "(then: mesh-runtime runs watch|wait RUN)")
    ls = add_command(commands, "ls", _ls, "list the catalog: every agent and pipeline on the mesh")
    nats_option(ls)
    ls.add_argument("--json", action="store_true", help="print the catalog as JSON")


def _call(args: argparse.Namespace) -> int:
    from runtime.nats import client

    try:
        check_name(args.name)  # it becomes a subject: a space or a wildcard would misroute
    except ValueError as exc:
        print(f"error: {escape(str(exc))}", file=sys.stderr)
        return 2
    if args.request_id is not None and not is_request_id(args.request_id):
        print("error: --request-id takes 1 to 128 characters of A-Z, a-z, 0-9, _ and -",
              file=sys.stderr)
        return 2
    text = read_payload(args.payload)
    try:
        payload = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        print(f"error: the payload is not JSON ({exc}); pass a JSON value or - for stdin",
              file=sys.stderr)
        return 2
    timeout = args.timeout

    async def run() -> int:
        nc = await client.open_client(client_url(args))
        try:
            if args.run_async:
                from runtime.nats.caller import start_run

                print(await start_run(nc, args.name, payload, timeout, args.request_id))
            elif args.capability:
                reply, source = await client.call_capability(nc, args.name, payload, timeout)
                shown = "".join(c if c.isprintable() else "?" for c in source)
                print(f"answered by {shown}", file=sys.stderr)
                print(json.dumps(reply, indent=2))
            elif args.stream or await client.is_streaming(nc, args.name):
                async for chunk in client.stream(nc, args.name, payload, timeout):
                    print(json.dumps(chunk), flush=True)
            else:
                print(json.dumps(await client.call(nc, args.name, payload, timeout,
                                                   args.request_id), indent=2))
            return 0
        except p.MeshError as exc:
            if exc.code == p.NOT_FOUND:
                exc.message += await did_you_mean(nc, args.name, capability=args.capability)
            print(json.dumps(exc.to_dict(), indent=2), file=sys.stderr)
            return 1
        finally:
            await nc.close()

    return run_client(run)


def _ls(args: argparse.Namespace) -> int:
    from runtime.nats import client
    from runtime.nats.listing import full_catalog
    from runtime.nats.liveness import mark_offline

    async def run() -> int:
        nc = await client.open_client(client_url(args))
        try:
            entries = await full_catalog(nc)
            if entries:
                await mark_offline(nc.jetstream(timeout=3), entries)
        finally:
            await nc.close()
        if entries is None:
            print("error: this NATS server has no JetStream, so there is no catalog",
                  file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(entries, indent=2))
        else:
            print(_table(entries))
        return 0

    return run_client(run)


def _table(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "(the catalog is empty)"
    rows = [("NAME", "KIND", "VERSION", "TAGS", "DESCRIPTION")] + [(
        str(e.get("name", "")), "stream" if e.get("streaming") else "call",
        str(e.get("version", "")), ",".join(e.get("tags") or []), str(e.get("description", "")),
    ) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    marks = [""] + [" (offline)" if e.get("offline") else "" for e in entries]
    return "\n".join(("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False))
                      + "  " + r[4]).rstrip() + mark for r, mark in zip(rows, marks, strict=True))

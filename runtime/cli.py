"""The `mesh-runtime` command: up, validate, call, ls, graph, schema."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from runtime import protocol as p
from runtime.durations import parse_duration
from runtime.issues import MeshFileError


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.run(args) or 0)
    except MeshFileError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mesh-runtime", description="A declarative agent mesh on NATS.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, run: Any, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(run=run)
        return sub

    up = command("up", _up, "serve every agent and pipeline of a mesh file")
    up.add_argument("-f", "--file", default="mesh.yaml", type=Path)
    up.add_argument("--nats", help="NATS URL (beats NATS_URL and the file); 'embedded' to start one")
    up.add_argument("--no-reload", action="store_true", help="do not watch the file for changes")
    validate = command("validate", _validate, "check a mesh file whole (exit 0 valid, 1 invalid)")
    validate.add_argument("-f", "--file", default="mesh.yaml", type=Path)
    call = command("call", _call, "call an agent or pipeline and print its JSON reply")
    call.add_argument("name")
    call.add_argument("payload", nargs="?", default="{}", help="JSON, or - to read stdin")
    call.add_argument("--nats", help=f"NATS URL (default: NATS_URL or {p.DEFAULT_CLIENT_URL})")
    call.add_argument("--timeout", default="30s", help="how long to wait, like 5s (default 30s)")
    call.add_argument("--stream", action="store_true",
                      help="stream (found from the catalog when it is on)")
    ls = command("ls", _ls, "list the catalog: every agent and pipeline on the mesh")
    ls.add_argument("--nats", help=f"NATS URL (default: NATS_URL or {p.DEFAULT_CLIENT_URL})")
    ls.add_argument("--json", action="store_true", help="print the catalog as JSON")
    graph = command("graph", _graph, "print pipelines as Mermaid flowcharts")
    graph.add_argument("-f", "--file", default="mesh.yaml", type=Path)
    graph.add_argument("pipeline", nargs="?")
    command("schema", _schema, "print the JSON Schema of mesh.yaml")
    return parser


def _setup_logging(verbose: bool) -> None:
    class Plain(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            text = super().format(record)
            return text if record.levelno == logging.INFO else f"{record.levelname.lower()}: {text}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Plain("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("nats").setLevel(logging.CRITICAL)  # we log connection changes ourselves


def _client_url(args: argparse.Namespace) -> str:
    return str(args.nats or os.environ.get("NATS_URL") or p.DEFAULT_CLIENT_URL)


def _up(args: argparse.Namespace) -> int:
    from runtime.runner import StartupError, run_fast, serve

    try:
        run_fast(serve(args.file, args.nats, reload=not args.no_reload))
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _validate(args: argparse.Namespace) -> int:
    from runtime.loader import load_mesh

    mesh = load_mesh(args.file)
    for warning in mesh.warnings:
        print(warning, file=sys.stderr)
    print(f"{args.file}: ok ({len(mesh.agents)} agents, {len(mesh.pipelines)} pipelines)")
    return 0


def _call(args: argparse.Namespace) -> int:
    from runtime import client

    text = sys.stdin.read() if args.payload == "-" else args.payload
    try:
        payload = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        print(f"error: the payload is not JSON ({exc}); pass a JSON value or - for stdin",
              file=sys.stderr)
        return 2
    try:
        timeout = parse_duration(args.timeout)
    except ValueError as exc:
        print(f"error: --timeout: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        nc = await client.open_client(_client_url(args))
        try:
            if args.stream or await client.is_streaming(nc, args.name):
                async for chunk in client.stream(nc, args.name, payload, timeout):
                    print(json.dumps(chunk), flush=True)
            else:
                print(json.dumps(await client.call(nc, args.name, payload, timeout), indent=2))
            return 0
        except p.MeshError as exc:
            print(json.dumps(exc.to_dict(), indent=2), file=sys.stderr)
            return 1
        finally:
            await nc.close()

    return _run_client(run)


def _ls(args: argparse.Namespace) -> int:
    from runtime import client

    async def run() -> int:
        nc = await client.open_client(_client_url(args))
        try:
            entries = await client.catalog(nc)
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

    return _run_client(run)


def _run_client(run: Any) -> int:
    from runtime.client import UnreachableError

    try:
        return int(asyncio.run(run()))
    except UnreachableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _table(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "(the catalog is empty)"
    rows = [("NAME", "KIND", "VERSION", "TAGS", "DESCRIPTION")] + [(
        str(e.get("name", "")), "stream" if e.get("streaming") else "call",
        str(e.get("version", "")), ",".join(e.get("tags") or []), str(e.get("description", "")),
    ) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False))
                      + "  " + r[4]).rstrip() for r in rows)


def _graph(args: argparse.Namespace) -> int:
    from runtime.graph import to_mermaid
    from runtime.loader import load_mesh

    mesh = load_mesh(args.file)
    try:
        print(to_mermaid(dict(mesh.spec.pipelines), args.pipeline))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _schema(args: argparse.Namespace) -> int:
    from runtime.model import mesh_json_schema

    print(json.dumps(mesh_json_schema(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

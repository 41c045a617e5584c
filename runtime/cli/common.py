"""What every command module shares: adding a command, the client URL, running a client."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from runtime.core import protocol as p

Commands = Any  # argparse's _SubParsersAction, which has no public type
Run = Callable[[argparse.Namespace], int]


def add_command(commands: Commands, name: str, run: Run, help_text: str) -> argparse.ArgumentParser:
    """A subcommand whose `args.run(args)` is `run`."""
    sub: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(run=run)
    return sub


def file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", default="mesh.yaml", type=Path, help="the mesh file")


def nats_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nats", help=f"NATS URL (default: NATS_URL or {p.DEFAULT_CLIENT_URL})")


def client_url(args: argparse.Namespace) -> str:
    """--nats beats NATS_URL, which beats the default where `up` puts its embedded server."""
    return str(args.nats or os.environ.get("NATS_URL") or p.DEFAULT_CLIENT_URL)


def run_client(run: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a client coroutine; an unreachable server is exit code 2 with what to do."""
    from runtime.nats.client import UnreachableError

    try:
        return int(asyncio.run(run()))
    except UnreachableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

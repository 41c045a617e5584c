"""What every command module shares: adding a command, the client URL, running a client."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from runtime.core import protocol as p
from runtime.core.durations import parse_duration
from runtime.core.logs import LEVELS
from runtime.core.text import suggest

Commands = Any  # argparse's _SubParsersAction, which has no public type
_NUMBER = re.compile(r"^\s*\d+(\.\d+)?\s*$")
Run = Callable[[argparse.Namespace], int]


LOG_LEVELS = LEVELS
_INVALID_COMMAND = re.compile(r"argument COMMAND: invalid choice: '([^']*)'")


class Parser(argparse.ArgumentParser):
    """argparse, with options anywhere after the command (`call NAME --timeout 2 JSON`)
    and a did-you-mean for a mistyped command."""

    _intermixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._subparsers is not None or self._intermixing:  # the top parser, or inside
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def error(self, message: str) -> Any:
        typed = _INVALID_COMMAND.match(message)
        if typed and self._subparsers is not None:
            names = [name for action in self._subparsers._group_actions
                     for name in getattr(action, "choices", None) or ()]
            hint = suggest(typed.group(1), names)
            message = f"unknown command '{typed.group(1)}'{hint or ''}" + (
                "" if hint else f" (commands: {', '.join(names)})")
        super().error(message)


def global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """-v and --log-level, on the top parser and again on every command, so that both
    `mesh-runtime -v up` and `mesh-runtime up -v` work; a command's copy sets a value
    only when given (SUPPRESS), so it never undoes one given before the command."""
    unset: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging", **unset)
    parser.add_argument("--log-level", choices=LOG_LEVELS, type=str.lower,
                        help="the least level logged (default info; -v means debug)", **unset)


_GLOBALS = argparse.ArgumentParser(add_help=False)
global_options(_GLOBALS, top=False)


def add_command(commands: Commands, name: str, run: Run, help_text: str) -> argparse.ArgumentParser:
    """A subcommand whose `args.run(args)` is `run`; it takes the global options too."""
    sub: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text, parents=[_GLOBALS])
    sub.set_defaults(run=run)
    return sub


def file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", default="mesh.yaml", type=Path, help="the mesh file")


def nats_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nats", help=f"NATS URL (default: NATS_URL or {p.DEFAULT_CLIENT_URL})")


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (`--workers`, `--limit`)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got '{text}'")
    return value


def duration_arg(text: str) -> float:
    """An argparse type: `250ms`, `5s`, `2m`, or a plain number of seconds, as in mesh.yaml."""
    try:
        return parse_duration(float(text) if _NUMBER.match(text) else text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use seconds (5, 0.5) or a unit (250ms, 5s, 2m)") from None


def package_version() -> str:
    from importlib import metadata  # only for --version: it costs tens of ms at every start

    try:
        return metadata.version("mesh-runtime")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def client_url(args: argparse.Namespace) -> str:
    """--nats beats NATS_URL, which beats the default where `up` puts its embedded server."""
    return str(args.nats or os.environ.get("NATS_URL") or p.DEFAULT_CLIENT_URL)


def closed_pipe() -> int:
    """Standard output's reader went away (`mesh-runtime ls | head -1`): end quietly, as
    a tool killed by SIGPIPE would (exit 141), with nothing left to flush at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13  # SIGPIPE


def run_client(run: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a client coroutine; an unreachable server is exit code 2 with what to do."""
    from runtime.nats.client import UnreachableError

    try:
        return int(asyncio.run(run()))
    except UnreachableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def read_payload(argument: str | None) -> str:
    """The payload text: the argument, else standard input when `-` or when it is piped."""
    if argument == "-" or (argument is None and not sys.stdin.isatty()):
        return sys.stdin.read()
    return argument or ""


async def did_you_mean(nc: Any, name: str, *, capability: bool = False) -> str:
    """`; did you mean 'x'?` from the catalog's names (or capabilities) close to `name`."""
    from runtime.nats.client import catalog

    try:
        entries = await catalog(nc) or []
    except Exception:  # a hint is a nicety: never let it hide the error itself
        return ""
    if not capability:
        return suggest(name, [str(e["name"]) for e in entries])
    offered = {str(c) for e in entries if isinstance(e.get("capabilities"), list)
               for c in e["capabilities"]}
    return suggest(name, sorted(offered))

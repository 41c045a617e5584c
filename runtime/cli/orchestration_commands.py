"""Client commands for the orchestration features: broadcast, and the shared state."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any

from runtime.cli.common import (
    Commands,
    add_command,
    client_url,
    duration_arg,
    nats_option,
    read_payload,
    run_client,
)
from runtime.core import protocol as p
from runtime.core.bus import MAX_ANSWERS, state_key_problem
from runtime.core.names import name_problem


def register(commands: Commands) -> None:
    cast = add_command(commands, "broadcast", _broadcast,
                       "ask every agent offering a capability and print all their answers")
    cast.add_argument("capability")
    cast.add_argument("payload", nargs="?",
                      help="JSON, or - to read stdin (read when piped; default {})")
    cast.add_argument("--within", default=1.0, type=duration_arg,
                      help="how long to gather answers: 2 (seconds), 500ms, 2s (default 1s)")
    cast.add_argument("--max-answers", default=MAX_ANSWERS, type=_at_least_one, metavar="N",
                      help=f"keep at most N answers (default {MAX_ANSWERS}; and at most 16 MB "
                           "of them): past that it stops, and a last entry says so")
    nats_option(cast)
    state = add_command(commands, "state", _state,
                        "read and write the shared state (the mesh-context KV bucket)")
    state.add_argument("action", choices=("get", "put", "rm", "ls"))
    state.add_argument("key", nargs="?", help="the key (get, put, rm)")
    state.add_argument("value", nargs="?", help="put: the JSON value, or - to read stdin")
    state.add_argument("--json", action="store_true", help="ls: print the keys as a JSON list")
    nats_option(state)


def _payload(text: str, what: str) -> tuple[Any, str | None]:
    text = sys.stdin.read() if text == "-" else text
    try:
        return (json.loads(text) if text.strip() else {}), None
    except ValueError as exc:
        return None, f"error: the {what} is not JSON ({exc}); pass a JSON value or - for stdin"


def _shown(text: str) -> str:
    """Text safe for a terminal: control characters escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got '{text}'")
    return int(text)


def _broadcast(args: argparse.Namespace) -> int:
    from runtime.nats import client
    from runtime.nats.bus import NatsBus

    if (problem := name_problem(args.capability, "capability")) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    payload, problem = _payload(read_payload(args.payload), "payload")
    within = args.within
    if problem:
        print(problem, file=sys.stderr)
        return 2

    async def run() -> int:
        nc = await client.open_client(client_url(args))
        try:
            answers = await NatsBus(nc).broadcast(args.capability, payload, within,
                                                  uuid.uuid4().hex, max_answers=args.max_answers)
        finally:
            await nc.close()
        if not answers:
            error = p.MeshError(p.NOT_FOUND, f"no agent offering capability '{args.capability}' "
                                f"answered within {within:g}s", agent=args.capability)
            print(json.dumps(error.to_dict(), indent=2), file=sys.stderr)
            return 1
        print(json.dumps(answers, indent=2))
        last = answers[-1]
        if last["agent"] == "" and "max_answers" in last.get("error", {}).get("details", {}):
            print(f"note: {last['error']['message']}", file=sys.stderr)  # the list was cut
        return 0 if any(a["status"] == "ok" for a in answers) else 1

    return run_client(run)


def _state(args: argparse.Namespace) -> int:
    from runtime.nats import client
    from runtime.nats.state import KvState

    needs_key = args.action != "ls"
    if needs_key and args.key is None:
        print(f"error: state {args.action} needs a KEY", file=sys.stderr)
        return 2
    if needs_key and (problem := state_key_problem(args.key)):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    value = None
    if args.action == "put":
        if args.value is None:
            print("error: state put needs KEY and a JSON VALUE (or - for stdin)", file=sys.stderr)
            return 2
        value, problem = _payload(args.value, "value")
        if problem:
            print(problem, file=sys.stderr)
            return 2

    async def run() -> int:
        nc = await client.open_client(client_url(args))
        state = KvState(nc)
        try:
            if args.action == "get":
                found = await state.get(args.key)
                if found is None and args.key not in await state.keys():
                    print(f"error: no key '{args.key}' in the shared state", file=sys.stderr)
                    return 1
                print(json.dumps(found, indent=2))
            elif args.action == "put":
                await state.put(args.key, value)
            elif args.action == "rm":
                await state.delete(args.key)
            else:
                keys = await state.keys()  # any client may have written them: escape
                print(json.dumps(keys) if args.json else "\n".join(map(_shown, keys)))
            return 0
        except p.MeshError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
        except Exception as exc:  # JetStream trouble: say it, no traceback
            print(f"error: the shared state is not reachable: {exc or type(exc).__name__}",
                  file=sys.stderr)
            return 1
        finally:
            await nc.close()

    return run_client(run)

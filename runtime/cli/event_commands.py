"""Commands for messages on the bus: `send SUBJECT [JSON | -]` publishes once (fire and
forget); `listen SUBJECT` prints each message with its headers."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from runtime.cli.common import Commands, add_command, client_url, nats_option, read_payload, run_client
from runtime.core.text import escape


def register(commands: Commands) -> None:
    send = add_command(commands, "send", _send, "publish one message on a subject (no reply)")
    send.add_argument("subject")
    send.add_argument("payload", nargs="?", help="JSON, or - to read stdin (default {})")
    send.add_argument("-H", "--header", action="append", default=[], metavar="KEY:VALUE",
                      help="a header to send (repeatable)")
    nats_option(send)
    listen = add_command(commands, "listen", _listen,
                         "print the messages on a subject (wildcards allowed) with their headers")
    listen.add_argument("subject")
    listen.add_argument("--json", action="store_true",
                        help="one JSON object a line: subject, headers, data")
    listen.add_argument("--count", type=int, default=0, help="exit after N messages")
    nats_option(listen)


def _subject_problem(subject: str, wildcards: bool) -> str | None:
    from runtime.core.subjects import subject_problem

    if subject.startswith("$KV.") and wildcards:  # watching a bucket's puts is harmless
        subject = subject[1:]
    elif subject.startswith("$"):
        return f"subject '{subject}' starts with '$': the server's own subjects are not for this"
    problem = subject_problem(subject)
    if problem is None and not wildcards and any(t in ("*", ">") for t in subject.split(".")):
        return f"subject '{subject}' has a wildcard: a message is sent to one literal subject"
    return problem


def _send(args: argparse.Namespace) -> int:
    from runtime.nats import client

    problem = _subject_problem(args.subject, wildcards=False)
    if problem:
        print(f"error: {escape(problem)}", file=sys.stderr)
        return 2
    text = read_payload(args.payload)
    try:
        body = json.dumps(json.loads(text) if text.strip() else {}).encode()
    except ValueError as exc:
        print(f"error: the payload is not JSON ({exc}); pass a JSON value or - for stdin",
              file=sys.stderr)
        return 2
    headers = {}
    for item in args.header:
        key, sep, value = item.partition(":")
        if not sep or not key.strip() or any(c in item for c in "\r\n"):
            print(f"error: a header is KEY:VALUE, not {escape(item)!r}", file=sys.stderr)
            return 2
        headers[key.strip()] = value.strip()

    async def run() -> int:
        nc = await client.open_client(client_url(args))
        try:
            await nc.publish(args.subject, body, headers=headers or None)
            await nc.flush(timeout=5)
        finally:
            await nc.close()
        print(f"sent {len(body)} bytes on {args.subject}", file=sys.stderr)
        return 0

    return run_client(run)


def _listen(args: argparse.Namespace) -> int:
    from runtime.nats import client

    problem = _subject_problem(args.subject, wildcards=True)
    if problem:
        print(f"error: {escape(problem)}", file=sys.stderr)
        return 2

    async def run() -> int:
        nc = await client.open_client(client_url(args))
        done = asyncio.Event()
        seen = 0

        async def show(msg: Any) -> None:
            nonlocal seen
            if done.is_set():
                return
            seen += 1
            print(_shown(msg, args.json), flush=True)
            if args.count and seen >= args.count:
                done.set()

        try:
            await nc.subscribe(args.subject, cb=show)
            await nc.flush(timeout=5)
            print(f"listening on {args.subject}", file=sys.stderr, flush=True)
            await done.wait()
        finally:
            await nc.close()
        return 0

    try:
        return run_client(run)
    except KeyboardInterrupt:
        return 0


def _shown(msg: Any, as_json: bool) -> str:
    headers = dict(msg.headers or {})
    try:
        data: Any = json.loads(msg.data) if msg.data else None
    except ValueError:
        data = msg.data.decode(errors="replace")
    if as_json:
        return json.dumps({"subject": msg.subject, "headers": headers, "data": data})
    lines = [f"[{escape(msg.subject)}]"]
    lines += [f"  {escape(k)}: {escape(v)}" for k, v in headers.items()]
    lines.append("  " + escape(data if isinstance(data, str) else json.dumps(data)))
    return "\n".join(lines)

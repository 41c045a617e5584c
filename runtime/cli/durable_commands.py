"""`mesh-runtime runs signal RUN NAME [JSON]` and `mesh-runtime runs resume RUN`: durable runs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from runtime.cli.common import add_command, client_url, nats_option, run_client
from runtime.core.text import escape


def register(sub: Any) -> None:
    """Add `signal` and `resume` to the `runs` command's actions."""
    signal = add_command(sub, "signal", _signal,
                         "send a signal to a durable run parked on a wait step")
    signal.add_argument("run_id", metavar="RUN", help="the run id")
    signal.add_argument("name", help="the signal, as the pipeline's wait: {signal: NAME} says")
    signal.add_argument("payload", nargs="?", default="null",
                        help="the signal's JSON: the wait step's result (default null)")
    resume = add_command(sub, "resume", _resume,
                         "run a failed or cancelled durable run again from the step that failed")
    resume.add_argument("run_id", metavar="RUN", help="the run id")
    for parser in (signal, resume):
        nats_option(parser)


def _client(args: argparse.Namespace, work: Any) -> int:
    from runtime.nats import client
    from runtime.runs.durable.control import ControlError
    from runtime.runs.reader import JournalUnavailable

    async def run() -> int:
        nc = await client.open_client(client_url(args))
        try:
            return int(await work(nc))
        except (ValueError, ControlError, JournalUnavailable) as exc:
            print(f"error: {escape(str(exc))}", file=sys.stderr)
            return 1
        finally:
            await nc.close()

    return run_client(run)


def _signal(args: argparse.Namespace) -> int:
    from runtime.runs.durable.control import send_signal

    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        print(f"error: the signal's payload is not JSON: {exc}", file=sys.stderr)
        return 1

    async def work(nc: Any) -> int:
        pipeline = await send_signal(nc, args.run_id, args.name, payload)
        print(f"signal '{args.name}' sent to run {args.run_id} ({escape(pipeline)})")
        return 0

    return _client(args, work)


def _resume(args: argparse.Namespace) -> int:
    from runtime.runs.durable.control import request_resume

    async def work(nc: Any) -> int:
        answer = await request_resume(nc, args.run_id)
        print(f"resumed run {args.run_id} on instance {escape(str(answer.get('instance')))}")
        return 0

    return _client(args, work)

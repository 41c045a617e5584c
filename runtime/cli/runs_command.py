"""`mesh-runtime runs ls|show|watch|wait|cancel`: pipeline runs, read from the run journal."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from runtime.cli import durable_commands
from runtime.cli.common import (
    Commands,
    add_command,
    client_url,
    duration_arg,
    nats_option,
    positive_int,
    run_client,
)
from runtime.core import protocol as p
from runtime.core.text import escape

STATUSES = ("running", "waiting", "ok", "failed", "cancelled")


def register(commands: Commands) -> None:
    runs = add_command(commands, "runs", _usage,
                       "pipeline runs: list, show, watch, wait, cancel, signal, resume")
    sub = runs.add_subparsers(metavar="ACTION")
    ls = add_command(sub, "ls", _ls, "the newest runs first")
    ls.add_argument("pipeline", nargs="?", help="only the runs of this pipeline")
    ls.add_argument("--status", choices=STATUSES, help="only runs in this state")
    ls.add_argument("--limit", type=positive_int, default=20, help="how many (default 20)")
    ls.add_argument("--json", action="store_true", help="one JSON list of rows")
    show = add_command(sub, "show", _show, "a run's timeline: every step, its time and result")
    show.add_argument("run_id", metavar="RUN", help="the run id (the request id of the call)")
    show.add_argument("--json", action="store_true", help="the run and its events as JSON")
    watch = add_command(sub, "watch", _watch,
                        "print a run's events as they happen; exit 0 ok, 1 failed")
    watch.add_argument("run_id", metavar="RUN")
    wait = add_command(sub, "wait", _wait, "wait for a run's end and print its output, as call")
    wait.add_argument("run_id", metavar="RUN")
    wait.add_argument("--timeout", type=duration_arg, default=600.0,
                      help="how long to wait: 30s, 10m, 2h (default 10m)")
    cancel = add_command(sub, "cancel", _cancel, "stop a running run; its caller gets cancelled")
    cancel.add_argument("run_id", metavar="RUN")
    for parser in (ls, show, watch, wait, cancel):
        nats_option(parser)
    durable_commands.register(sub)  # signal, resume


def _usage(args: argparse.Namespace) -> int:
    print("usage: mesh-runtime runs {ls,show,watch,wait,cancel,signal,resume} ... (see "
          "mesh-runtime runs -h)",
          file=sys.stderr)
    return 2


def _client(args: argparse.Namespace, work: Any) -> int:
    """Run `work(nc)` against the mesh; bad ids and an unreadable journal are exit 1."""
    from runtime.nats import client
    from runtime.runs.reader import JournalUnavailable

    async def run() -> int:
        nc = await client.open_client(client_url(args))
        try:
            return int(await work(nc))
        except (ValueError, JournalUnavailable) as exc:
            print(f"error: {escape(str(exc))}", file=sys.stderr)
            return 1
        finally:
            await nc.close()

    return run_client(run)


def _ls(args: argparse.Namespace) -> int:
    from runtime.runs.display import table
    from runtime.runs.reader import recent_records
    from runtime.runs.summary import list_runs

    async def work(nc: Any) -> int:
        records = await recent_records(nc, args.limit)
        rows = list_runs(records, args.pipeline, args.status, args.limit)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(table(rows))
        return 0

    return _client(args, work)


def _show(args: argparse.Namespace) -> int:
    from runtime.runs.display import timeline_text
    from runtime.runs.reader import read_run
    from runtime.runs.summary import describe

    async def work(nc: Any) -> int:
        records = await read_run(nc, args.run_id)
        if not records:
            print(f"error: no run {args.run_id} in the journal (it never ran here, was not "
                  "recorded, or is older than runs.keep)", file=sys.stderr)
            return 1
        run = describe(args.run_id, records)
        if args.json:
            print(json.dumps(run, indent=2))
        else:
            print(timeline_text(run))
        return 0

    return _client(args, work)


def _watch(args: argparse.Namespace) -> int:
    from runtime.runs.display import line_text, verdict
    from runtime.runs.reader import follow_run
    from runtime.runs.summary import describe, timeline

    async def work(nc: Any) -> int:
        records = []
        try:
            async for record in follow_run(nc, args.run_id):
                records.append(record)
                run = describe(args.run_id, records)
                if record.event is None:
                    print(f"(unreadable message on {escape(record.subject)})", flush=True)
                    continue
                print(line_text(timeline(run)[-1]), flush=True)
        except LookupError:
            print(f"error: no run {args.run_id} in the journal", file=sys.stderr)
            return 1
        run = describe(args.run_id, records)
        print(verdict(run), flush=True)
        return 0 if run["status"] == "ok" else 1

    return _client(args, work)


def _wait(args: argparse.Namespace) -> int:
    from runtime.runs.reader import follow_run
    from runtime.runs.summary import describe

    async def work(nc: Any) -> int:
        records = []
        try:
            async with asyncio.timeout(args.timeout):
                async for record in follow_run(nc, args.run_id):
                    records.append(record)
        except LookupError:
            print(f"error: no run {args.run_id} in the journal", file=sys.stderr)
            return 1
        except TimeoutError:
            late = p.MeshError(p.TIMEOUT, f"run {args.run_id} did not end within "
                               f"{args.timeout:g}s; it may still be running",
                               request_id=args.run_id)
            print(json.dumps(late.to_dict(), indent=2), file=sys.stderr)
            return 1
        run = describe(args.run_id, records)
        if run["status"] == "ok":
            print(json.dumps(run.get("output"), indent=2))
            return 0
        error = run.get("error") or {"code": "unknown", "message": "unreadable end"}
        body = {"code": error.get("code"), "message": error.get("message"),
                "agent": run.get("pipeline") or "", "request_id": args.run_id, "details": {}}
        print(json.dumps(body, indent=2), file=sys.stderr)
        return 1

    return _client(args, work)


def _cancel(args: argparse.Namespace) -> int:
    from runtime.runs.control import cancel_run
    from runtime.runs.reader import read_run
    from runtime.runs.summary import describe

    async def work(nc: Any) -> int:
        answer = await cancel_run(nc, args.run_id)
        if answer is not None:
            print(f"cancelled run {args.run_id}")
            return 0
        records = await read_run(nc, args.run_id)
        if not records:
            print(f"error: no run {args.run_id} is running, and the journal has none",
                  file=sys.stderr)
            return 1
        status = describe(args.run_id, records)["status"]
        print(f"error: run {args.run_id} is not running anywhere (status: {status})",
              file=sys.stderr)
        return 1

    return _client(args, work)

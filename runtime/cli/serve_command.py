"""`mesh-runtime up`: serve a mesh file."""

from __future__ import annotations

import argparse
import re
import sys

from runtime.cli.common import Commands, add_command, file_option, positive_int
from runtime.core.durations import parse_duration
from runtime.core.logs import log_options

_PLAIN_SECONDS = re.compile(r"^\d+(\.\d+)?$")


def register(commands: Commands) -> None:
    up = add_command(commands, "up", _up, "serve every agent and pipeline of a mesh file")
    file_option(up)
    up.add_argument("--nats", help="NATS URL (beats NATS_URL and the file); 'embedded' to start one")
    up.add_argument("--no-reload", action="store_true",
                    help="do not watch the mesh file and the handlers' code for changes")
    up.add_argument("--grace", type=_grace, default=30.0, metavar="DURATION",
                    help="on SIGINT or SIGTERM, how long requests in flight may take to finish "
                    "(like 5s, or a number of seconds; default 30s)")
    up.add_argument("--workers", type=positive_int, default=1, metavar="N",
                    help="worker processes serving every agent (default 1); NATS spreads "
                         "requests over them")
    up.add_argument("--metrics-port", type=int, metavar="PORT",
                    help="serve Prometheus metrics on http://HOST:PORT/metrics")
    up.add_argument("--metrics-host", default="127.0.0.1",
                    help="the address --metrics-port binds (default 127.0.0.1: this machine only)")
    log_options(up)


def _grace(text: str) -> float:
    value = text.strip()
    if _PLAIN_SECONDS.match(value):
        return float(value)  # 0 is allowed: do not wait at all
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _up(args: argparse.Namespace) -> int:
    from runtime.supervise.control import worker_fd

    fd = worker_fd()
    if fd is not None:  # this process is one of the workers of an `up`
        from runtime.supervise.worker_main import run_worker

        return run_worker(fd, args)
    import asyncio

    from runtime.supervise.startup import StartupError
    from runtime.supervise.supervisor import Options, Supervisor, WorkersFailed

    metrics = None if args.metrics_port is None else (args.metrics_host, args.metrics_port)
    options = Options(argv=args.argv, file=args.file, nats=args.nats, workers=args.workers,
                      reload=not args.no_reload, grace=args.grace, metrics=metrics)
    supervisor = Supervisor(options)
    try:
        asyncio.run(supervisor.run())  # it serves nothing itself: no need of uvloop
    except WorkersFailed as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return exc.code
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return supervisor.exit_code


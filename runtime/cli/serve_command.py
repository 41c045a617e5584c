"""`mesh-runtime up`: serve a mesh file."""

from __future__ import annotations

import argparse
import sys

from runtime.cli.common import Commands, add_command, file_option
from runtime.core.logs import log_options


def register(commands: Commands) -> None:
    up = add_command(commands, "up", _up, "serve every agent and pipeline of a mesh file")
    file_option(up)
    up.add_argument("--nats", help="NATS URL (beats NATS_URL and the file); 'embedded' to start one")
    up.add_argument("--no-reload", action="store_true", help="do not watch the file for changes")
    up.add_argument("--metrics-port", type=int, metavar="PORT",
                    help="serve Prometheus metrics on http://HOST:PORT/metrics")
    up.add_argument("--metrics-host", default="127.0.0.1",
                    help="the address --metrics-port binds (default 127.0.0.1: this machine only)")
    log_options(up)


def _up(args: argparse.Namespace) -> int:
    from runtime.serve.runner import StartupError, run_fast, serve

    try:
        run_fast(serve(args.file, args.nats, reload=not args.no_reload,
                       metrics_port=args.metrics_port, metrics_host=args.metrics_host))
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0

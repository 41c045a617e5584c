"""`mesh-runtime ui`: a web page that shows the mesh, calls it and follows its runs."""

from __future__ import annotations

import argparse
import os
import sys

from runtime.cli.common import Commands, add_command, client_url, nats_option, run_client

INSTALL_HINT = ("error: `mesh-runtime ui` needs the ui extra: pip install 'mesh-runtime[ui]' "
                "(Starlette, uvicorn, sse-starlette)")


def register(commands: Commands) -> None:
    ui = add_command(commands, "ui", _ui,
                     "serve a web page: the mesh live, a form to call each agent, runs, errors")
    ui.add_argument("--port", type=int, default=8765, help="the port (default 8765; 0: any free one)")
    ui.add_argument("--host", default="127.0.0.1",
                    help="the address to listen on (default 127.0.0.1; any other needs a token)")
    nats_option(ui)
    ui.add_argument("--token", default=os.environ.get("MESH_UI_TOKEN"),
                    help="the token the page asks for (default MESH_UI_TOKEN; on a host "
                         "other than 127.0.0.1 without one, a token is made up and printed)")


def _ui(args: argparse.Namespace) -> int:
    try:
        import sse_starlette  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    from runtime.ui.server import ListenError, serve
    from runtime.ui.settings import Settings, settle_token

    if not 0 <= args.port < 65536:
        print(f"error: --port {args.port} is not a port (0-65535; 0: any free one)",
              file=sys.stderr)
        return 2
    token, made_up = settle_token(args.host, args.token)
    settings = Settings(host=args.host, port=args.port, nats_url=client_url(args), token=token)
    try:
        return run_client(lambda: serve(settings, made_up))
    except ListenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

"""Runs the page: connects to NATS, builds the app, serves it with uvicorn until a signal.

The shutdown is the app's own: the first SIGINT or SIGTERM ends every live stream (so
uvicorn does not wait on open pages), then uvicorn stops as it always does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from dataclasses import replace
from types import FrameType
from typing import Any

import nats
import uvicorn
from nats.aio.client import Client

from runtime.core.text import mask_urls
from runtime.nats.client import UnreachableError
from runtime.ui.app import create_app
from runtime.ui.settings import Settings
from runtime.ui.state import UiState

log = logging.getLogger("mesh-runtime.ui")


async def connect(url: str, timeout: float = 5) -> Client:
    """A client that reconnects on its own once connected (the page stays up while NATS
    restarts); the first connect is bounded by `timeout`."""

    async def quiet(exc: Exception) -> None:
        pass  # reconnects are NATS's business; the page says when the mesh does not answer

    try:
        async with asyncio.timeout(timeout):
            return await nats.connect(url, connect_timeout=2, max_reconnect_attempts=-1,
                                      reconnect_time_wait=1, error_cb=quiet,
                                      name="mesh-runtime ui")
    except Exception as exc:
        raise UnreachableError(
            f"cannot reach NATS at {mask_urls(url)} ({mask_urls(str(exc)) or type(exc).__name__})"
            ": is `mesh-runtime up` running? Point at another server with --nats or NATS_URL"
        ) from None


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app first when a signal asks it to stop."""

    def __init__(self, config: uvicorn.Config, state: UiState):
        super().__init__(config)
        self.ui_state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.ui_state.end_streams()
        super().handle_exit(sig, frame)
        # uvicorn (0.29+) raises the signal again once stopped; a clean stop is exit code 0
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()

    def _log_started_message(self, listeners: Any) -> None:
        pass  # `serve` prints the URL itself, with its token


class ListenError(RuntimeError):
    """The page's address cannot be listened on (taken, or not this machine's)."""


def listen(host: str, port: int) -> socket.socket:
    """The page's socket, bound here so that a taken port is one clear line (uvicorn itself
    would log it and call sys.exit)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                          " (another --port or --host?)") from None
    return sock


async def serve(settings: Settings, announce_token: bool) -> int:
    sock = listen(settings.host, settings.port)
    settings = replace(settings, port=int(sock.getsockname()[1]))  # --port 0: a free one
    try:
        nc = await connect(settings.nats_url)
    except BaseException:
        sock.close()
        raise
    try:
        app = create_app(nc, settings)
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                access_log=False, timeout_graceful_shutdown=3, lifespan="on",
                                ws="none")
        server = _Server(config, app.state.ui)
        # say where to look once the socket is bound (uvicorn exits when it cannot bind)
        announcer = asyncio.create_task(_announce(server, settings, announce_token))
        try:
            await server.serve(sockets=[sock])
        finally:
            announcer.cancel()
        return 0 if server.started else 1
    finally:
        sock.close()
        with contextlib.suppress(Exception):  # NATS may be gone already: stopping still ends well
            await nc.close()


async def _announce(server: uvicorn.Server, settings: Settings, announce_token: bool) -> None:
    while not server.started:
        await asyncio.sleep(0.05)
    print(f"mesh-runtime ui: serving the mesh at {mask_urls(settings.nats_url)} on "
          f"{settings.url}", flush=True)
    if announce_token:
        print("  (any host but 127.0.0.1 needs a token; this one was made up for this run:"
              " pass --token to choose it)", flush=True)
    print("  press Ctrl+C to stop", file=sys.stderr, flush=True)

"""`mesh-runtime up`: load, connect (or start NATS), serve, reload, and stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from nats.aio.client import Client

from runtime.core.issues import MeshFileError
from runtime.core.text import mask_urls
from runtime.load.loader import LoadCache, load_mesh
from runtime.load.mesh import Mesh
from runtime.nats.connection import AuthorizationRefused, choose_servers, connect, connect_options
from runtime.nats.embedded import NatsServer, NatsServerError
from runtime.serve.catalog import Discovery
from runtime.serve.health import Health, MetricsPortError
from runtime.serve.restore import restore
from runtime.serve.server import MeshServer

log = logging.getLogger("mesh-runtime")
T = TypeVar("T")


def run_fast(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop where it is installed (it serves about a third faster)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


class StartupError(RuntimeError):
    """`up` cannot start; the message says what to do."""


class ConnectionLost(RuntimeError):
    """NATS closed the connection for good: `up` exits so that a supervisor restarts it."""


class Lifeline:
    """Ends serving when the connection is closed for good (not by our own shutdown), and
    restores discovery after a reconnect."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()  # also set by SIGINT and SIGTERM
        self.reason: str | None = None
        self.restore: Callable[[], Coroutine[Any, Any, Any]] | None = None
        self._restoring: asyncio.Task[Any] | None = None

    def reconnected(self) -> None:
        if self.restore is None or self.stop.is_set():
            return
        if self._restoring is not None:
            self._restoring.cancel()  # a newer reconnect: check again from the start
        self._restoring = asyncio.get_running_loop().create_task(self.restore())

    def close(self) -> None:
        if self._restoring is not None:
            self._restoring.cancel()

    def closed(self, reason: str) -> None:
        if not self.stop.is_set():  # after a stop, the close is our own drain
            self.reason = reason
            self.stop.set()


def embedded_server(mesh: Mesh) -> NatsServer:
    """Start the embedded nats-server the file asks for (JetStream on, 127.0.0.1)."""
    settings = mesh.spec.nats.embedded
    if settings.port and _port_taken(settings.port):
        raise StartupError(
            f"port {settings.port} on 127.0.0.1 is taken (is another mesh-runtime up or "
            f"nats-server running?). To join that server: "
            f"mesh-runtime up --nats nats://127.0.0.1:{settings.port}")
    store = str(mesh.path.resolve().parent / settings.store_dir) if settings.store_dir else None
    try:
        return NatsServer(port=settings.port, store_dir=store).start()
    except NatsServerError as exc:
        raise StartupError(str(exc)) from None


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


async def serve(path: Path, nats_flag: str | None, reload: bool,
                metrics_port: int | None = None, metrics_host: str = "127.0.0.1",
                grace: float = 30.0) -> int:
    """Run `up` until SIGINT or SIGTERM, then give requests in flight `grace` seconds;
    returns how many were left unanswered. Raises MeshFileError or StartupError."""
    cache = LoadCache()  # kept for reloads: they redo only what an edit changed
    mesh = load_mesh(path, cache=cache)
    for warning in mesh.warnings:
        log.warning("%s", warning)
    servers = choose_servers(mesh.spec.nats, nats_flag)
    embedded = embedded_server(mesh) if servers is None else None
    try:
        urls = [embedded.url] if embedded else servers
        assert urls
        lost = Lifeline()
        try:
            options = connect_options(mesh.spec.nats, mesh.path.resolve().parent)
            nc = await connect(urls, name=f"mesh-runtime {mesh.name}",
                               on_closed=lost.closed, on_reconnected=lost.reconnected,
                               **options)
        except AuthorizationRefused as exc:  # the server answered: it is running
            raise StartupError(
                f"cannot connect to NATS at {mask_urls(', '.join(urls))}: {exc}") from None
        except Exception as exc:
            reason = "no answer within 10s" if isinstance(exc, TimeoutError) else (
                mask_urls(str(exc)) or type(exc).__name__)
            raise StartupError(
                f"cannot connect to NATS at {mask_urls(', '.join(urls))}: {reason}. Is that server "
                "running? The URL comes from --nats, else NATS_URL, else `nats:` in the "
                "mesh file; leave all three unset to start an embedded server") from None
        return await _serve_on(nc, mesh, reload, cache, lost, (metrics_host, metrics_port),
                               grace)
    finally:
        if embedded is not None:
            embedded.stop()


async def _serve_on(nc: Client, mesh: Mesh, reload: bool, cache: LoadCache,
                    lost: Lifeline, metrics: tuple[str, int | None] = ("127.0.0.1", None),
                    grace: float = 30.0) -> int:
    discovery = await Discovery.open(nc)
    server = MeshServer(nc, discovery)
    try:
        health = await Health.open(nc, server, discovery, mesh, metrics[1], metrics[0])
    except MetricsPortError as exc:
        with contextlib.suppress(Exception):
            await nc.drain()
        raise StartupError(str(exc)) from None
    change = await server.apply(mesh)
    await health.start()
    lost.restore = lambda: restore(nc, server)  # a server restarted empty lost our entries
    stop = lost.stop
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before `ready:`: a signal right after it
        loop.add_signal_handler(sig, stop.set)  # must stop cleanly, not kill the process
    url = mask_urls(nc.connected_url.geturl()) if nc.connected_url else "?"
    log.info("ready: %d agents, %d pipelines on %s", len(mesh.agents), len(mesh.pipelines), url)
    log.debug("%s", change.describe())
    watcher = asyncio.create_task(_watch(server, mesh, cache)) if reload else None
    try:
        await stop.wait()
        if lost.reason is not None:
            raise ConnectionLost(f"NATS closed the connection for good ({lost.reason}); "
                                 "exiting so that a supervisor can restart mesh-runtime up")
    finally:
        log.info("stopping: finishing requests in flight (at most %gs)", grace)
        lost.close()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        left = await server.shutdown(grace)
        if left:
            log.warning("grace period (%gs) over: %d request(s) left unanswered", grace, left)
        await health.close()
        with contextlib.suppress(Exception):
            await nc.drain()
        log.info("stopped")
    return left


async def _watch(server: MeshServer, mesh: Mesh, cache: LoadCache) -> None:
    from runtime.serve.reload import watch_and_apply

    await watch_and_apply(server, mesh, cache)


__all__ = ["ConnectionLost", "MeshFileError", "StartupError", "serve"]

"""`mesh-runtime up`: load, connect (or start NATS), serve, reload, and stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client

from runtime import tracing
from runtime.core.issues import MeshFileError
from runtime.core.text import mask_urls
from runtime.load.loader import LoadCache, load_mesh
from runtime.load.mesh import Mesh
from runtime.nats.catalog import Discovery
from runtime.nats.connection import AuthorizationRefused, choose_servers, connect, connect_options
from runtime.observe.health import Health
from runtime.observe.metrics import MetricsPortError
from runtime.observe.restore import restore
from runtime.runs.control import RunControl
from runtime.runs.journal import Journal
from runtime.serve.server import MeshServer
from runtime.supervise.loop import run_fast
from runtime.supervise.startup import NatsUnreachable, StartupError, embedded_server
from runtime.triggers.manager import Triggers

if TYPE_CHECKING:
    from runtime.supervise.worker_link import WorkerLink

log = logging.getLogger("mesh-runtime")


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


async def serve(path: Path, nats_flag: str | None, reload: bool, link: WorkerLink | None = None,
                metrics_port: int | None = None, metrics_host: str = "127.0.0.1",
                grace: float = 30.0) -> int:
    """Serve until SIGINT or SIGTERM (a worker: or until its supervisor is gone), then give
    requests in flight `grace` seconds; returns how many were left unanswered. Raises
    MeshFileError, StartupError or ConnectionLost."""
    cache = LoadCache()  # kept for reloads: they redo only what an edit changed
    mesh = load_mesh(path, cache=cache)
    for warning in mesh.warnings:  # said once, by the first worker of several
        log.log(logging.WARNING if link is None or link.start.announce else logging.DEBUG,
                "%s", warning)
    servers = choose_servers(mesh.spec.nats, nats_flag)
    settings, folder = mesh.spec.nats.embedded, mesh.path.resolve().parent
    embedded = None
    if servers is None and link is not None:  # the supervisor runs it, for every worker
        try:
            servers = [await link.embedded(settings.port, settings.store_dir, folder)]
        except RuntimeError as exc:
            raise StartupError(str(exc)) from None
    elif servers is None:
        embedded = embedded_server(settings.port, settings.store_dir, folder)
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
            raise NatsUnreachable(
                f"cannot connect to NATS at {mask_urls(', '.join(urls))}: {exc}") from None
        except Exception as exc:
            reason = "no answer within 10s" if isinstance(exc, TimeoutError) else (
                mask_urls(str(exc)) or type(exc).__name__)
            raise NatsUnreachable(
                f"cannot connect to NATS at {mask_urls(', '.join(urls))}: {reason}. Is that server "
                "running? The URL comes from --nats, else NATS_URL, else `nats:` in the "
                "mesh file; leave all three unset to start an embedded server") from None
        if link is not None and metrics_port is not None:  # the supervisor serves the sum
            metrics_host, metrics_port = "127.0.0.1", 0  # of every worker's, read from here
        return await _serve_on(nc, mesh, reload, cache, lost, link,
                               (metrics_host, metrics_port), grace)
    finally:
        if embedded is not None:
            embedded.stop()


async def _serve_on(nc: Client, mesh: Mesh, reload: bool, cache: LoadCache, lost: Lifeline,
                    link: WorkerLink | None,
                    metrics: tuple[str, int | None] = ("127.0.0.1", None),
                    grace: float = 30.0) -> int:
    discovery = await Discovery.open(nc)
    settings = mesh.spec.runs
    journal = None
    if settings.record:
        quiet = link is not None and not link.start.announce  # one worker of several says it
        journal = await Journal.open(nc, settings.keep, settings.max_bytes, quiet)
    server = MeshServer(nc, discovery, journal)
    # Spans, if a collector is configured: each process (each worker) exports its own,
    # set up before the first service exists (each takes the span maker when it starts).
    tracing.start(mesh.spec.tracing, mesh.name, server.instance_id,
                  announce=link is None or link.start.announce)
    if link is not None:  # generations count on across the workers of one `up`
        server.generation = link.start.generation - 1
    triggers = Triggers(nc, server.instance_id)  # started once what they call is served
    try:
        health = await Health.open(nc, server, discovery, mesh, metrics[1], metrics[0],
                                   triggers)
    except MetricsPortError as exc:
        with contextlib.suppress(Exception):
            await nc.drain()
        raise StartupError(str(exc)) from None
    change = await server.apply(mesh)
    await triggers.apply(mesh)
    control = RunControl(nc, server.runs)  # `runs cancel` reaches the runs of this process
    await control.start()
    await health.start()
    lost.restore = lambda: restore(nc, server)  # a server restarted empty lost our entries
    stop = lost.stop
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before `ready:`: a signal right after it
        loop.add_signal_handler(sig, stop.set)  # must stop cleanly, not kill the process
    url = mask_urls(nc.connected_url.geturl()) if nc.connected_url else "?"
    if link is not None:  # the supervisor says `ready:` once every worker is
        link.ready(len(mesh.agents), len(mesh.pipelines), url, server.generation,
                   mesh.path.resolve().parent, mesh.handler_files, health.metrics_port)
        link.on_close(stop.set)  # the supervisor is gone: stop serving
    else:
        log.info("ready: %d agents, %d pipelines on %s", len(mesh.agents), len(mesh.pipelines),
                 url)
    log.debug("%s", change.describe())
    watcher = (asyncio.create_task(_watch(server, mesh, cache, link, triggers)) if reload
               else None)
    try:
        await stop.wait()
        if lost.reason is not None:
            raise ConnectionLost(f"NATS closed the connection for good ({lost.reason}); "
                                 "exiting so that a supervisor can restart mesh-runtime up")
    finally:
        log.log(_level(logging.INFO, link), "stopping: finishing requests in flight "
                "(at most %gs)", grace)
        lost.close()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await control.stop()
        reporting = _report_in_flight(server, link) if link else None
        await triggers.close(grace)  # no new trigger requests; those in flight end first
        left = await server.shutdown(grace, link.stopped_taking if link else None)
        if reporting is not None:
            reporting.cancel()
        if left:
            log.warning("grace period (%gs) over: %d request(s) left unanswered", grace, left)
        await health.close()
        await asyncio.to_thread(tracing.stop)  # the last spans, at most 2 s
        with contextlib.suppress(Exception):
            await nc.drain()
        log.log(_level(logging.INFO, link), "stopped")
    return left


def _report_in_flight(server: MeshServer, link: WorkerLink) -> asyncio.Task[None]:
    """Tell the supervisor how many requests are left, now and whenever that changes."""
    services = list(server.services.values())

    async def report() -> None:
        last = -1
        while True:
            count = sum(s.in_flight + s.admission.waiting for s in services)
            if count != last:
                link.in_flight(count)
                last = count
            await asyncio.sleep(0.1)

    return asyncio.ensure_future(report())


def _level(level: int, link: WorkerLink | None) -> int:
    """A worker's lifecycle lines are the supervisor's to say: debug there."""
    return level if link is None else logging.DEBUG


async def _watch(server: MeshServer, mesh: Mesh, cache: LoadCache,
                 link: WorkerLink | None, triggers: Triggers) -> None:
    from runtime.supervise.reload import watch_and_apply

    await watch_and_apply(server, mesh, cache, link.hooks() if link else None,
                          also=triggers.apply)


__all__ = ["ConnectionLost", "MeshFileError", "StartupError", "run_fast", "serve"]

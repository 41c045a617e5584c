"""Everything `up` does to be seen: heartbeats, NATS micro answers and Prometheus metrics.

`open` runs before the first apply (the instance record must exist before the catalog
names the instance, or another `up` would take it for dead), `start` after it, and
`close` after the server has shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.load.mesh import Mesh
from runtime.nats.catalog import Discovery
from runtime.observe.instances import Heartbeat
from runtime.observe.micro import MicroResponder
from runtime.serve.server import MeshServer
from runtime.triggers.manager import Triggers

log = logging.getLogger("mesh-runtime")


class Health:
    """The heartbeat loop, the micro responder and the metrics endpoint of one process."""

    def __init__(self, nc: Client, server: MeshServer, heartbeat: Heartbeat | None):
        self.server = server
        self.heartbeat = heartbeat
        self.micro = MicroResponder(nc, server)
        self._beating: asyncio.Task[None] | None = None
        self._metrics: object | None = None

    @classmethod
    async def open(cls, nc: Client, server: MeshServer, discovery: Discovery | None,
                   mesh: Mesh, metrics_port: int | None = None,
                   metrics_host: str = "127.0.0.1", triggers: Triggers | None = None) -> Health:
        heartbeat = None
        if discovery is not None and discovery.instances is not None:
            heartbeat = Heartbeat(server, discovery, mesh.spec.health.interval, mesh.name)
            try:
                await heartbeat.beat(list(mesh.endpoints))
                await heartbeat.sweep()
            except Exception as exc:  # serving matters more than liveness bookkeeping
                log.warning("could not write this instance's heartbeat: %s",
                            exc or type(exc).__name__)
        health = cls(nc, server, heartbeat)
        if metrics_port is not None:  # first: a port that is taken stops `up` before it serves
            from runtime.observe.metrics import serve_metrics
            from runtime.observe.trigger_metrics import TriggerCollector

            more = [TriggerCollector(triggers)] if triggers is not None else []
            health._metrics = serve_metrics(server, metrics_host, metrics_port, *more)
        return health

    @property
    def metrics_port(self) -> int | None:
        """The port /metrics is served on (the one bound, when port 0 was asked for)."""
        return getattr(self._metrics, "server_port", None)

    async def start(self) -> None:
        await self.micro.start()
        if self.heartbeat is not None:
            with contextlib.suppress(Exception):  # the record now has what was applied
                await self.heartbeat.beat()
            log.info("instance %s: heartbeat every %gs in %s", self.server.instance_id,
                     self.heartbeat.interval, p.INSTANCES_BUCKET)
            self._beating = asyncio.create_task(self.heartbeat.run())

    async def close(self) -> None:
        """Stop beating and answering; a clean stop deletes the instance record at once."""
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        await self.micro.stop()
        if self.heartbeat is not None:
            with contextlib.suppress(Exception):
                await self.heartbeat.leave()
        if self._metrics is not None:
            shutdown = getattr(self._metrics, "shutdown", None)
            if shutdown is not None:
                shutdown()

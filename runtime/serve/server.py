"""Applies a Mesh to NATS as a difference against what is already served.

Start is a difference from the empty mesh, and a reload is the same step from the
last good one: new names are subscribed and registered, removed ones drain, changed
ones switch definition for their next request, unchanged ones are not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client

from runtime.load.mesh import Endpoint, Mesh
from runtime.nats.bus import NatsBus
from runtime.nats.catalog import Discovery
from runtime.runs.active import Runs
from runtime.runs.durable.coordinator import DurableRuns
from runtime.runs.journal import Journal
from runtime.serve.deadlines import Deadlines
from runtime.serve.service import Service
from runtime.serve.stats import ServerStats

log = logging.getLogger("mesh-runtime")


@dataclass(frozen=True)
class Change:
    """What one apply did, and how long it took."""

    generation: int
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def describe(self) -> str:
        parts = [f"{label} {', '.join(names)}" for label, names in
                 (("added", self.added), ("changed", self.changed), ("removed", self.removed))
                 if names]
        what = "; ".join(parts) if parts else "no change"
        return f"generation {self.generation}: {what} ({self.seconds * 1000:.0f} ms)"


class MeshServer:
    """Everything one `up` process serves on one NATS connection."""

    def __init__(self, nc: Client, discovery: Discovery | None, journal: Journal | None = None):
        self.nc = nc
        self.discovery = discovery
        self.services: dict[str, Service] = {}
        self.mesh: Mesh | None = None
        self.generation = 0
        self.instance_id = uuid.uuid4().hex[:12]  # this process, in catalog, micro and KV
        self.stats = ServerStats()
        if discovery is not None:
            discovery.instance = self.instance_id
        self.deadlines = Deadlines()
        self.bus = NatsBus(nc)  # calls, broadcasts and shared state for handlers and pipelines
        self.runs = Runs(journal, self.instance_id)  # pipeline runs: recorded, cancellable
        self._leaving: set[asyncio.Future[Any]] = set()  # removed names finishing requests

    @property
    def mesh_name(self) -> str:
        return self.mesh.name if self.mesh is not None else "mesh"

    async def apply(self, mesh: Mesh) -> Change:
        """Serve `mesh`, changing only what differs from the mesh served now."""
        started = time.perf_counter()
        wanted: dict[str, Endpoint] = mesh.endpoints
        added = [n for n in wanted if n not in self.services]
        removed = [n for n in self.services if n not in wanted]
        changed = [n for n in wanted if n in self.services
                   and self.services[n].definition.fingerprint != wanted[n].fingerprint]
        for name in changed:
            self.services[name].update(wanted[name])
        self.runs.record = mesh.spec.runs.record
        await self._durable(mesh)
        new_services = [Service(self.nc, wanted[n], self.bus, mesh.name, self.deadlines,
                                self.instance_id, self.runs) for n in added]
        await asyncio.gather(*(s.start() for s in new_services),
                             *(self.services[n].offers.serve(wanted[n].capabilities)
                               for n in changed))
        self.services.update({s.name: s for s in new_services})
        if new_services or changed:  # a round trip: the server has every new subscription
            try:
                await self.nc.flush(timeout=5)
            except Exception as exc:
                log.warning("new subscriptions not confirmed by NATS yet: %s",
                            exc or type(exc).__name__)
        if self.discovery is not None:
            try:
                await self.discovery.publish(wanted[n] for n in [*added, *changed])
            except Exception as exc:  # serving matters more than being listed
                log.warning("could not update the catalog: %s", exc)
        await self._remove(removed, wait=False)
        self.mesh = mesh
        self.generation += 1
        return Change(self.generation, added, changed, removed, time.perf_counter() - started)

    async def _durable(self, mesh: Mesh) -> None:
        """Durable runs (runtime.runs.durable) start with the first durable pipeline served."""
        if self.runs.durable is None and self.discovery is not None and any(
                d.durable for d in mesh.pipelines.values()):  # (no discovery: no JetStream)
            durable = DurableRuns(self.nc, self.bus, self.instance_id, mesh.name,
                                  mesh.spec.health.interval, self.runs.journal, self.runs.stats)
            try:
                await durable.open(mesh.spec.runs.keep, mesh.spec.runs.max_bytes)
            except Exception as exc:  # serving matters more: durable pipelines say why
                log.warning("durable runs are not available: %s", exc or type(exc).__name__)
            else:
                self.runs.durable = durable
        if self.runs.durable is not None:
            self.runs.durable.serve(mesh.pipelines)

    async def _remove(self, names: list[str], wait: bool = True,
                      stopped_taking: Callable[[], None] | None = None) -> None:
        """Stop taking requests, leave discovery, and let requests in flight finish.

        With `wait=False` (a reload), requests in flight finish in the background, so a
        slow one never holds up the reload; `shutdown` still waits for them.
        """
        leaving = [self.services.pop(n) for n in names]
        if not leaving:
            return
        # Stop new requests first; draining (not a bare unsubscribe) still answers those
        # NATS had already delivered to us.
        await asyncio.gather(*(_stop_taking(s) for s in leaving))
        if stopped_taking is not None:
            stopped_taking()
        if self.discovery is not None and not self.nc.is_closed:  # closed: nothing to reach
            try:
                await self.discovery.withdraw(names)
            except Exception as exc:
                log.warning("could not update the catalog: %s", exc)
        finishing = asyncio.gather(*(s.stop() for s in leaving))
        if wait:
            await finishing
            return
        task = asyncio.ensure_future(finishing)
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

    async def shutdown(self, grace: float = 30.0,
                       stopped_taking: Callable[[], None] | None = None) -> int:
        """Stop every service, leave the catalog, and give requests in flight `grace`
        seconds to finish; returns how many were still unanswered then. Calls
        `stopped_taking` once NATS routes no new request here (a worker tells its
        supervisor, which then counts the swap to new workers done)."""
        services = list(self.services.values())
        await self._remove(list(self.services), wait=False, stopped_taking=stopped_taking)
        if self._leaving:
            await asyncio.wait(list(self._leaving), timeout=grace)
        if self.runs.durable is not None:  # runs left here are another `up`'s to resume
            await self.runs.durable.close()
        await self.deadlines.close()
        return sum(s.in_flight + s.admission.waiting for s in services)


async def _stop_taking(service: Service) -> None:
    await service.offers.stop()
    subscription, service.subscription = service.subscription, None
    if subscription is None:
        return
    try:
        await subscription.drain()
    except Exception:  # the connection is closing or gone: nothing more will arrive
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()

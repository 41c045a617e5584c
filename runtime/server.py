"""Applies a Mesh to NATS as a difference against what is already served.

Start is a difference from the empty mesh, and a reload is the same step from the
last good one: new names are subscribed and registered, removed ones drain, changed
ones switch definition for their next request, unchanged ones are not touched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client

from runtime.caller import call_agent
from runtime.catalog import Discovery
from runtime.mesh import Endpoint, Mesh
from runtime.service import Service

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

    def __init__(self, nc: Client, discovery: Discovery | None):
        self.nc = nc
        self.discovery = discovery
        self.services: dict[str, Service] = {}
        self.mesh: Mesh | None = None
        self.generation = 0

    async def caller(self, name: str, payload: Any, timeout: float, request_id: str) -> Any:
        return await call_agent(self.nc, name, payload, timeout, request_id)

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
        new_services = [Service(self.nc, wanted[n], self.caller, mesh.name) for n in added]
        await asyncio.gather(*(s.start() for s in new_services))
        self.services.update({s.name: s for s in new_services})
        if self.discovery is not None:
            try:
                await self.discovery.publish(wanted[n] for n in [*added, *changed])
            except Exception as exc:  # serving matters more than being listed
                log.warning("could not update the catalog: %s", exc)
        await self._remove(removed)
        self.mesh = mesh
        self.generation += 1
        return Change(self.generation, added, changed, removed, time.perf_counter() - started)

    async def _remove(self, names: list[str]) -> None:
        """Stop taking requests, leave discovery, and let requests in flight finish."""
        leaving = [self.services.pop(n) for n in names]
        if not leaving:
            return
        for service in leaving:  # unsubscribe first, so no new request arrives
            if service.subscription is not None:
                await service.subscription.unsubscribe()
                service.subscription = None
        if self.discovery is not None:
            try:
                await self.discovery.withdraw(names)
            except Exception as exc:
                log.warning("could not update the catalog: %s", exc)
        await asyncio.gather(*(s.stop() for s in leaving))

    async def shutdown(self) -> None:
        """Stop every service, finish requests in flight, leave the catalog."""
        await self._remove(list(self.services))

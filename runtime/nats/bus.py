"""The mesh as handlers and pipelines reach it over one NATS connection: calls by name or
capability, broadcasts, and the shared state (runtime.core.bus.Bus, over NATS)."""

from __future__ import annotations

import json
from typing import Any

from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from runtime.core import protocol as p
from runtime.nats.broadcast import answerers_in, broadcast
from runtime.nats.caller import call_agent
from runtime.nats.state import KvState


class NatsBus:
    """What `ctx.call`, `ctx.broadcast`, `ctx.state` and pipeline steps use."""

    def __init__(self, nc: Client):
        self.nc = nc
        self.state = KvState(nc)
        self._catalog: KeyValue | None = None
        self._no_catalog = False

    async def __call__(self, name: str, payload: Any, timeout: float, request_id: str, /, *,
                       capability: bool = False) -> Any:
        return await call_agent(self.nc, name, payload, timeout, request_id,
                                capability=capability)

    async def broadcast(self, capability: str, payload: Any, within: float,
                        request_id: str) -> list[dict[str, Any]]:
        async def answerers() -> int | None:
            return await self.answerers(capability)

        return await broadcast(self.nc, capability, payload, within, request_id, answerers)

    async def answerers(self, capability: str) -> int | None:
        """How many live answers a broadcast to `capability` can get; None if unknown."""
        kv = await self._catalog_bucket()
        if kv is None:
            return None
        try:
            entry = await kv.get(p.CATALOG_KEY)
            entries = json.loads(entry.value or b"[]")
        except (KeyNotFoundError, ValueError):
            return None
        if not isinstance(entries, list):
            return None
        return answerers_in([e for e in entries if isinstance(e, dict)], capability)

    async def _catalog_bucket(self) -> KeyValue | None:
        if self._catalog is None and not self._no_catalog:
            try:
                self._catalog = await self.nc.jetstream(timeout=2).key_value(p.CATALOG_BUCKET)
            except Exception:  # no JetStream, or no catalog yet: wait out `within`
                self._no_catalog = True
        return self._catalog

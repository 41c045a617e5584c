"""The mesh as handlers and pipelines reach it over one NATS connection: calls by name or
capability, broadcasts, and the shared state (runtime.core.bus.Bus, over NATS)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from runtime.core import protocol as p
from runtime.core.bus import MAX_ANSWERS
from runtime.nats.broadcast import Broadcaster, answerers_in
from runtime.nats.caller import call_agent, start_run
from runtime.nats.events import publish_event, publish_progress
from runtime.nats.state import KvState

# How long a read of the catalog answers "how many will answer a broadcast". An instance that
# joined since may be missed by a broadcast in that window; one that left makes it wait out
# `within`. Reading the catalog per broadcast would cost about as much as the broadcast.
CATALOG_TTL = 1.0


class NatsBus:
    """What `ctx.call`, `ctx.broadcast`, `ctx.state` and pipeline steps use."""

    def __init__(self, nc: Client):
        self.nc = nc
        self.state = KvState(nc)
        self.broadcaster = Broadcaster(nc)
        self._catalog: KeyValue | None = None
        self._no_catalog = False
        self._entries: list[dict[str, Any]] | None = None
        self._read_at = 0.0

    async def __call__(self, name: str, payload: Any, timeout: float, request_id: str, /, *,
                       capability: bool = False) -> Any:
        return await call_agent(self.nc, name, payload, timeout, request_id,
                                capability=capability)

    async def start_run(self, name: str, payload: Any, timeout: float) -> str:
        return await start_run(self.nc, name, payload, timeout)

    async def progress(self, run_id: str, agent: str, fraction: float | None,
                       message: str) -> None:
        await publish_progress(self.nc, run_id, agent, fraction, message)

    async def broadcast(self, capability: str, payload: Any, within: float,
                        request_id: str, *,
                        max_answers: int = MAX_ANSWERS) -> list[dict[str, Any]]:
        async def answerers() -> int | None:
            return await self.answerers(capability)

        return await self.broadcaster.broadcast(capability, payload, within, request_id,
                                                answerers, max_answers)

    async def emit(self, source: str, event_type: str, data: Any) -> None:
        """Publish an event of `source` on mesh.agent.<source>.events (CloudEvents)."""
        await publish_event(self.nc, source, event_type, data)

    async def answerers(self, capability: str) -> int | None:
        """How many live answers a broadcast to `capability` can get; None if unknown."""
        now = asyncio.get_running_loop().time()
        if self._entries is None or now - self._read_at > CATALOG_TTL:
            self._entries, self._read_at = await self._read_catalog(), now
        return answerers_in(self._entries, capability) if self._entries is not None else None

    async def _read_catalog(self) -> list[dict[str, Any]] | None:
        kv = await self._catalog_bucket()
        if kv is None:
            return None
        try:
            entry = await kv.get(p.CATALOG_KEY)
            entries = json.loads(entry.value or b"[]")
        except (KeyNotFoundError, ValueError):
            return None
        except Exception:  # the connection is going: the broadcast waits out `within`
            return None
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else None

    async def _catalog_bucket(self) -> KeyValue | None:
        if self._catalog is None and not self._no_catalog:
            try:
                self._catalog = await self.nc.jetstream(timeout=2).key_value(p.CATALOG_BUCKET)
            except Exception:  # no JetStream, or no catalog yet: wait out `within`
                self._no_catalog = True
        return self._catalog

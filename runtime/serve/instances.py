"""This process's heartbeat in `mesh-instances`, and cleaning up after dead processes.

Every `health.interval` the instance record is put under the instance id; then the
catalog is read once and the record of every other instance named in it is checked. An
instance silent for 3 of its intervals is dead: it leaves every catalog entry, an entry
it served alone leaves with its registry card, and its record is deleted. Any live `up`
does this, so a `kill -9`'d process leaves within about 3 intervals; at start, an `up`
sweeps the whole bucket, so the next start cleans up when no other `up` was running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

from runtime.nats.liveness import all_records, instances_of, is_alive, read_records
from runtime.serve.catalog import Discovery
from runtime.serve.server import MeshServer

log = logging.getLogger("mesh-runtime")


class Heartbeat:
    """Puts this instance's record every interval and removes dead instances."""

    def __init__(self, server: MeshServer, discovery: Discovery, interval: float,
                 mesh_name: str):
        assert discovery.instances is not None
        self.server = server
        self.discovery = discovery
        self.kv = discovery.instances
        self.interval = interval
        self.mesh_name = mesh_name
        self.started = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self.host = socket.gethostname()

    def record(self, agents: list[str] | None = None) -> dict[str, Any]:
        return {"instance_id": self.server.instance_id, "mesh": self.mesh_name,
                "host": self.host, "pid": os.getpid(), "started": self.started,
                "generation": self.server.generation,
                "agents": sorted(list(self.server.services) if agents is None else agents),
                "heartbeat": round(time.time(), 3), "interval_s": self.interval}

    async def beat(self, agents: list[str] | None = None) -> None:
        await self.kv.put(self.server.instance_id, json.dumps(self.record(agents)).encode())

    async def run(self) -> None:
        """Beat and clean up every interval, until cancelled; NATS trouble only skips a beat."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
                await self.reap()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("heartbeat skipped: %s", exc or type(exc).__name__)

    async def reap(self) -> set[str]:
        """Remove the dead instances the catalog names; the ids removed."""
        entries = await self.discovery.entries()
        ours = self.server.instance_id
        others = {i for e in entries for i in instances_of(e)} - {ours}
        records = await read_records(self.kv, others) if others else {}
        dead = {i for i, record in records.items() if not is_alive(record)}
        if dead:
            await self._bury(dead)
        await self._heal(entries)
        return dead

    async def sweep(self) -> set[str]:
        """At start: remove every dead instance, in the catalog or only in the bucket."""
        records = await all_records(self.kv)
        dead = {i for i, r in records.items() if not is_alive(r)}
        entries = await self.discovery.entries()
        named = {i for e in entries for i in instances_of(e)} - {self.server.instance_id}
        unknown = named - records.keys()
        if unknown:  # named in the catalog, but no record at all: check it again
            dead |= {i for i, r in (await read_records(self.kv, unknown)).items()
                     if not is_alive(r)}
        if dead:
            await self._bury(dead)
        return dead

    async def leave(self) -> None:
        """A clean stop: this instance's record goes at once."""
        await self.kv.delete(self.server.instance_id)

    async def _bury(self, dead: set[str]) -> None:
        gone = await self.discovery.forget(dead)
        await asyncio.gather(*(self._delete(i) for i in dead))
        log.info("removed %d dead instance%s (%s)%s", len(dead), "" if len(dead) == 1 else "s",
                 ", ".join(sorted(dead)),
                 f"; offline now: {', '.join(sorted(gone))}" if gone else "")

    async def _delete(self, instance_id: str) -> None:
        try:
            await self.kv.delete(instance_id)
        except Exception as exc:  # not a valid key (hostile catalog), or already gone
            log.debug("could not delete instance %s: %s", instance_id, exc)

    async def _heal(self, entries: list[dict[str, Any]]) -> None:
        """Names we serve whose entry lost us (another `up` took us for dead): add us back."""
        listed = {e.get("name") for e in entries if self.server.instance_id in instances_of(e)}
        left_out = set(self.discovery.left_out)  # no room in the catalog key: not missing
        missing = [n for n in self.server.services if n not in listed and n not in left_out]
        if missing:
            services = self.server.services
            await self.discovery.publish(services[n].definition for n in missing)

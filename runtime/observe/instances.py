"""This process's heartbeat in `mesh-instances`, and cleaning up after dead processes.

Every `health.interval` the instance record is put under the instance id; then the
catalog is read once and the record of every other instance named in it is checked. An
instance silent for 3 of its intervals is dead: it leaves every catalog entry, an entry
it served alone leaves with its registry card, and its record is deleted. Any live `up`
does this, so a `kill -9`'d process leaves within about 3 intervals; at start, an `up`
sweeps the whole bucket, so the next start cleans up when no other `up` was running.

Records are untrusted (any client may write them): a pass reads at most READ_LIMIT of
them and buries at most REAP_LIMIT, so 20,000 junk records cost each pass a bounded
slice of time; the rest go in the next passes, one per interval.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from runtime.core import protocol as p
from runtime.core.text import shown
from runtime.nats.catalog import Discovery
from runtime.nats.liveness import (
    READ_LIMIT,
    Record,
    instances_of,
    is_alive,
    read_bucket,
    read_records,
)
from runtime.nats.records import listed, shows_the_gone
from runtime.serve.server import MeshServer

log = logging.getLogger("mesh-runtime")
REAP_LIMIT = 500  # dead instances buried per pass
AGENTS_READ = 50_000  # names read of the dead of one pass (for the cards they leave behind)


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
        nc = discovery.nc
        self.js = nc.jetstream(timeout=5) if nc is not None else None  # records' stored times
        self.backlog = False  # the last sweep left dead records for the next pass

    def record(self, agents: list[str] | None = None) -> dict[str, Any]:
        return {"instance_id": self.server.instance_id, "mesh": self.mesh_name,
                "host": self.host, "pid": os.getpid(), "started": self.started,
                "generation": self.server.generation,
                "agents": sorted(list(self.server.services) if agents is None else agents),
                "heartbeat": round(time.time(), 3), "interval_s": self.interval}

    async def beat(self, agents: list[str] | None = None) -> None:
        record = self.record(agents)
        data = json.dumps(record).encode()
        limit = self.discovery.max_payload - 1024
        if len(data) > limit:  # tens of thousands of names: the beat itself matters more
            keep = max(len(record["agents"]) * limit // len(data) - 1, 0)
            record["agents"], record["agents_truncated"] = record["agents"][:keep], True
            data = json.dumps(record).encode()
        await self.kv.put(self.server.instance_id, data)

    async def run(self) -> None:
        """Beat and clean up every interval, until cancelled; NATS trouble only skips a beat."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
                await self.reap()
                if self.backlog:
                    await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("heartbeat skipped: %s", exc or type(exc).__name__)

    async def reap(self) -> set[str]:
        """Remove the dead instances the catalog names; the ids removed."""
        entries = await self.discovery.entries()
        ours = self.server.instance_id
        others = {i for e in entries for i in instances_of(e)} - {ours}
        if len(others) > READ_LIMIT:  # a bounded pass; the others are checked in later ones
            others = set(random.sample(sorted(others), READ_LIMIT))
        records = await read_records(self.kv, others, self.js) if others else {}
        dead = set(sorted(i for i, record in records.items() if not is_alive(record))[:REAP_LIMIT])
        if dead:
            await self._bury(dead, records)
        await self._heal(entries)
        return dead

    async def sweep(self) -> set[str]:
        """At start: remove every dead instance, in the catalog or only in the bucket."""
        records, complete = await read_bucket(self.kv, READ_LIMIT)
        dead = {i for i, r in records.items() if not is_alive(r)}
        entries = await self.discovery.entries()
        named = {i for e in entries for i in instances_of(e)} - {self.server.instance_id}
        unknown = sorted(named - records.keys())[:READ_LIMIT]
        if unknown:  # named in the catalog, but no record read: check it again
            dead |= {i for i, r in (await read_records(self.kv, set(unknown), self.js)).items()
                     if not is_alive(r)}
        # More to do next pass: dead ones left over, or a partial read (oldest first: the
        # records not refreshed lately) that found any dead at all.
        self.backlog = len(dead) > REAP_LIMIT or (not complete and bool(dead))
        dead = set(sorted(dead)[:REAP_LIMIT])
        if dead:
            await self._bury(dead, records)
        return dead

    async def leave(self) -> None:
        """A clean stop: this instance's record goes at once."""
        await self._delete(self.server.instance_id)

    async def _bury(self, dead: set[str], records: Mapping[str, Record | None]) -> None:
        gone = await self.discovery.forget(dead)
        gone |= await self._drop_unlisted_cards(dead, records)
        await asyncio.gather(*(self._delete(i) for i in dead))
        log.info("removed %d dead instance%s (%s)%s", len(dead), "" if len(dead) == 1 else "s",
                 listed(shown(i) for i in sorted(dead)),
                 f"; offline now: {listed(shown(n) for n in sorted(gone))}" if gone else "")

    async def _drop_unlisted_cards(self, dead: set[str],
                                   records: Mapping[str, Record | None]) -> set[str]:
        """Cards of names the dead served that the catalog key had no room for (a big
        mesh): no entry tracks who serves them, so the live records decide."""
        names = {str(n) for i in dead for n in _agents(records.get(i))[:AGENTS_READ]}
        if not names or len(names) > AGENTS_READ:
            return set()  # nothing, or more than a real mesh serves: keep every card
        unlisted = names - {e.get("name") for e in await self.discovery.entries()}
        if not unlisted:
            return set()
        everyone, complete = await read_bucket(self.kv, READ_LIMIT)
        if not complete:
            return set()  # too many records to know who serves what: keep every card
        alive = [r for i, r in everyone.items() if i not in dead and is_alive(r)]
        if any(r.get("agents_truncated") for r in alive):
            return set()  # who serves what is not fully known: keep every card
        orphans = unlisted - {str(n) for r in alive for n in _agents(r)}
        for name in orphans:
            try:
                await self.discovery.registry.delete(name)
            except Exception as exc:
                log.debug("could not remove %s from the registry: %s", name, exc)
        return orphans

    async def _delete(self, instance_id: str) -> None:
        """Purge the record (no delete marker left behind: 20,000 of them would cost every
        later read of the bucket as much as the records did)."""
        try:
            if self.js is None:
                raise RuntimeError("no JetStream context")
            await self.js.purge_stream(f"KV_{p.INSTANCES_BUCKET}",
                                       subject=f"$KV.{p.INSTANCES_BUCKET}.{instance_id}")
        except Exception:
            try:
                await self.kv.delete(instance_id)
            except Exception as exc:  # not a valid key (hostile catalog), or already gone
                log.debug("could not delete instance %s: %s", instance_id, exc)

    async def _heal(self, entries: list[dict[str, Any]]) -> None:
        """Names we serve whose entry lost us (another `up` took us for dead): add us back."""
        ours = self.server.instance_id
        present = {e["name"] for e in entries if ours in instances_of(e)
                   and not shows_the_gone(e)}  # a stopped twin's definition: write ours
        left_out = set(self.discovery.left_out)  # no room in the catalog key: not missing
        missing = [n for n in self.server.services if n not in present and n not in left_out]
        if missing:
            services = self.server.services
            await self.discovery.publish(services[n].definition for n in missing)


def _agents(record: Record | None) -> list[Any]:
    agents = (record or {}).get("agents")
    return agents if isinstance(agents, list) else []

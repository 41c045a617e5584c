"""The mesh as the page shows it: every listed or served name with its kind and health,
read the way `mesh-runtime status` reads it (catalog, registry, instances, micro STATS),
again every few seconds; a change goes out to every page watching."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from nats.aio.client import Client

from runtime.nats.listing import full_catalog
from runtime.nats.status import gather_stats, live_instances, summarize
from runtime.ui.topics import Topic

log = logging.getLogger("mesh-runtime.ui")
DESCRIPTION_LIMIT = 300  # characters of a description in the mesh's table


async def read_mesh(nc: Client) -> dict[str, Any]:
    """`{"jetstream", "rows", "at"}`: one row per name, sorted by name."""
    entries = await full_catalog(nc)
    live = await live_instances(nc)
    answers = await gather_stats(nc, live)
    listed = {str(e.get("name")): e for e in entries or ()}
    rows = []
    for row in summarize(list(listed), answers, live):
        entry = listed.get(row.name, {})
        tags = entry["tags"] if isinstance(entry.get("tags"), list) else []
        description = str(entry.get("description") or "")
        rows.append({
            **row.as_dict(),
            "kind": "pipeline" if "pipeline" in tags else "agent",
            "streaming": bool(entry.get("streaming")),
            "description": description[:DESCRIPTION_LIMIT],
            "listed": row.name in listed,
        })
    return {"jetstream": entries is not None, "rows": rows, "at": time.time()}


class MeshWatch:
    """Reads the mesh every `interval` seconds; `latest` is the last reading."""

    def __init__(self, nc: Client, interval: float):
        self.nc = nc
        self.interval = interval
        self.topic = Topic(size=4)  # a page only needs the newest reading
        self.latest: dict[str, Any] | None = None
        self.ready = asyncio.Event()
        self._last_text = ""

    async def run(self) -> None:
        while True:
            try:
                reading = await read_mesh(self.nc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away for a moment: say so, keep trying
                log.warning("could not read the mesh: %s", exc)
                reading = {"jetstream": None, "rows": (self.latest or {}).get("rows", []),
                           "at": time.time(), "problem": str(exc)}
            self.latest = reading
            self.ready.set()
            text = json.dumps({k: v for k, v in reading.items() if k != "at"}, sort_keys=True)
            if text != self._last_text:
                self._last_text = text
                self.topic.publish({"event": "mesh", "data": reading})
            await asyncio.sleep(self.interval)

    async def now(self, wait: float = 5.0) -> dict[str, Any]:
        """The latest reading, waiting for the first one (at most `wait` seconds)."""
        if self.latest is None:
            try:
                await asyncio.wait_for(self.ready.wait(), wait)
            except TimeoutError:
                return {"jetstream": None, "rows": [], "at": time.time(),
                        "problem": "the mesh has not answered yet"}
        assert self.latest is not None
        return self.latest

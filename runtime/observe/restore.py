"""After a reconnect: put back the catalog entries and registry cards the server lost.

A nats-server restarted with an empty store (a new volume, a wiped disk) comes back
without the buckets. nats-py replays our subscriptions, so `up` serves again, but nobody
can find it. So each reconnect re-creates missing buckets, then checks that every name
we serve is in the catalog under our instance and has its card, and writes back what is
missing. JetStream may need a moment after a restart: a failed check is retried a few
times, then given up with a warning (the next reconnect checks again).
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client
from nats.js.errors import NoKeysError

from runtime.nats.catalog import INSTANCES, Discovery
from runtime.serve.server import MeshServer

log = logging.getLogger("mesh-runtime")
ATTEMPTS = 8
FIRST_WAIT = 0.25  # seconds before the second attempt; doubled each time, at most 2 s


async def restore(nc: Client, server: MeshServer) -> list[str]:
    """Write back what the server lost of our discovery; the names written back."""
    discovery = server.discovery
    if discovery is None:
        return []
    wait = FIRST_WAIT
    for attempt in range(ATTEMPTS):
        try:
            return await _restore_once(nc, server, discovery)
        except Exception as exc:  # JetStream not ready yet, or the connection dropped again
            if attempt == ATTEMPTS - 1 or nc.is_closed:
                log.warning("could not check the catalog after the reconnect: %s",
                            exc or type(exc).__name__)
                return []
            await asyncio.sleep(wait)
            wait = min(wait * 2, 2.0)
    return []


async def _restore_once(nc: Client, server: MeshServer, discovery: Discovery) -> list[str]:
    if await Discovery.open(nc, quiet=True) is None:  # re-creates any bucket that is gone
        raise RuntimeError("JetStream is not available")
    listed = {e.get("name") for e in await discovery.entries()
              if discovery.instance in (e.get(INSTANCES) or ())}
    services = dict(server.services)
    missing = [name for name in services if name not in listed
               and name not in discovery.left_out]  # left out: no room in the catalog key
    cards = await _cards(discovery)
    missing += [name for name in services if name not in missing and name not in cards]
    if missing:
        await discovery.publish(services[n].definition for n in missing)
        log.info("after the reconnect, wrote back %d catalog entr%s and card%s the server "
                 "had lost: %s", len(missing), "y" if len(missing) == 1 else "ies",
                 "" if len(missing) == 1 else "s", ", ".join(sorted(missing)))
    return missing


async def _cards(discovery: Discovery) -> set[str]:
    """The names that have a card: one listing of the bucket, not a read per name."""
    try:
        return set(await discovery.registry.keys())
    except NoKeysError:
        return set()

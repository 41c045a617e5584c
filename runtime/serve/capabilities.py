"""The extra subscriptions of an agent that offers capabilities.

For each capability `c`: `mesh.capability.<c>` in queue group `q.capability.<c>` (NATS hands
each call to one of the agents offering it, across processes) and `mesh.broadcast.<c>`
without a queue group (every agent offering it answers). Both feed the agent's own request
path, so a call by capability is served exactly like a call by name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from runtime.core import protocol as p

OnMessage = Callable[[Msg], Awaitable[None]]


class Offers:
    """The capability and broadcast subscriptions of one agent, kept in step with its definition."""

    def __init__(self, nc: Client, on_message: OnMessage):
        self.nc = nc
        self.on_message = on_message
        self.active: dict[str, tuple[Subscription, Subscription]] = {}

    async def serve(self, capabilities: Iterable[str]) -> None:
        """Subscribe the capabilities not served yet; drain those no longer offered."""
        wanted = set(capabilities)
        for capability in sorted(wanted - set(self.active)):
            self.active[capability] = (
                await self.nc.subscribe(
                    p.capability_subject(capability), queue=p.capability_queue_group(capability),
                    cb=self.on_message, pending_msgs_limit=-1, pending_bytes_limit=-1),
                await self.nc.subscribe(
                    p.broadcast_subject(capability), cb=self.on_message,
                    pending_msgs_limit=-1, pending_bytes_limit=-1),
            )
        await self._drain([self.active.pop(c) for c in sorted(set(self.active) - wanted)])

    async def stop(self) -> None:
        """Stop taking calls by capability; those already delivered are still answered."""
        await self._drain([self.active.pop(c) for c in sorted(self.active)])

    @staticmethod
    async def _drain(pairs: list[tuple[Subscription, Subscription]]) -> None:
        await asyncio.gather(*(_drain(s) for pair in pairs for s in pair))


async def _drain(subscription: Subscription) -> None:
    try:
        await subscription.drain()
    except Exception:  # the connection is closing or gone: nothing more will arrive
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()

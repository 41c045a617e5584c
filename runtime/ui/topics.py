"""Fan-out to the page's live streams: one bounded queue per client, the oldest event
dropped when a client falls behind, and an end the app sends to all at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

QUEUE_SIZE = 256  # events one client may fall behind before it loses the oldest
_END = object()


class Topic:
    """Events of one kind (the mesh, errors, a run's journal) for everyone watching."""

    def __init__(self, size: int = QUEUE_SIZE):
        self.size = size
        self.queues: set[asyncio.Queue[Any]] = set()
        self.closed = False

    def publish(self, event: dict[str, Any]) -> None:
        for queue in self.queues:
            _put(queue, event)

    def close(self) -> None:
        """Every stream of this topic ends (the app is shutting down)."""
        self.closed = True
        for queue in self.queues:
            _put(queue, _END)

    async def follow(self, first: list[dict[str, Any]] | None = None
                     ) -> AsyncIterator[dict[str, Any]]:
        """`first`, then each event published, until the topic closes or the client goes."""
        queue: asyncio.Queue[Any] = asyncio.Queue(self.size)
        self.queues.add(queue)
        try:
            for event in first or ():
                yield event
            while not self.closed:
                event = await queue.get()
                if event is _END:
                    return
                yield event
        finally:
            self.queues.discard(queue)


def _put(queue: asyncio.Queue[Any], event: Any) -> None:
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()  # the oldest goes: a slow page never holds the others up
    queue.put_nowait(event)

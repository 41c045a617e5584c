"""The requests one trigger has in flight: at most its target's `concurrency`, each in a
task of its own, and a stop that lets them finish within a grace period."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class InFlight:
    """Slots and tasks of one trigger."""

    def __init__(self, limit: int = 1):
        self.slots = asyncio.Semaphore(limit)
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def finish(self, grace: float) -> None:
        """Wait up to `grace` seconds for the tasks, then cancel those still running."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace)
        for task in list(self.tasks):
            task.cancel()

"""One supervised loop per trigger: a crash is logged once with its traceback, and the loop
starts again after a capped backoff, never in a tight loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

FIRST_DELAY = 0.5
MAX_DELAY = 30.0
HEALTHY_AFTER = 60.0  # a loop that ran this long without crashing starts its backoff anew


class Supervised:
    """Runs `work()` until `stop()`; restarts it when it raises."""

    def __init__(self, what: str, work: Callable[[], Awaitable[None]], logger: logging.Logger):
        self.what = what
        self.work = work
        self.logger = logger
        self.task: asyncio.Task[None] | None = None
        self.crashes = 0

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=self.what)

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        delay, seen = FIRST_DELAY, set[str]()
        while True:
            started = time.monotonic()
            try:
                await self.work()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.crashes += 1
                if time.monotonic() - started > HEALTHY_AFTER:
                    delay = FIRST_DELAY
                said = f"{type(exc).__name__}: {exc}"
                if said not in seen and len(seen) < 20:  # the traceback once per kind of crash
                    seen.add(said)
                    self.logger.error("%s stopped (%s); starting it again in %gs", self.what,
                                      said, delay, exc_info=exc)
                else:
                    self.logger.warning("%s stopped again (%s); starting it again in %gs",
                                        self.what, said, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)

"""Request deadlines for every request of a process, running or waiting, on one timer.

`asyncio.timeout` costs about 4.7 µs per request on uvloop (a timer handle each, plus
rescheduling); that is a fifth of a whole request here. Instead deadlines are rounded up
to a TICK and kept in buckets, one set per tick, with a heap of the ticks that have one:
noting and forgetting a request is a set operation, and the one timer wakes only at the
next tick that has a bucket, so 30,000 waiting requests cost no CPU until one is due. A
deadline then fires up to TICK late, which is fine for timeouts of a second or more.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from typing import Protocol

TICK = 0.01  # seconds: deadlines are rounded up to a multiple of this
_PER_SECOND = 1 / TICK


class Cancellable(Protocol):
    """A request task, or a request waiting for a slot: `cancel()` when its deadline passes."""

    def cancel(self) -> object: ...


class Deadlines:
    """Cancels what outlives its deadline (time.monotonic() based), at most TICK late."""

    def __init__(self) -> None:
        self.running: dict[Cancellable, set[Cancellable]] = {}  # each to its tick's bucket
        self.overdue: set[Cancellable] = set()
        self._buckets: dict[int, set[Cancellable]] = {}
        self._ticks: list[int] = []  # a heap of the ticks in _buckets (some maybe emptied)
        self._armed: int | None = None  # the tick the timer is set for
        self._timer: asyncio.TimerHandle | None = None

    def add(self, item: Cancellable, deadline: float) -> None:
        tick = int(deadline * _PER_SECOND) + 1  # the next tick (cheaper than math.ceil)
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = set()
            heapq.heappush(self._ticks, tick)
            if self._armed is None or tick < self._armed:
                self._arm(tick)
        bucket.add(item)
        self.running[item] = bucket

    def done(self, item: Cancellable) -> bool:
        """Forget `item`; True if it was cancelled for passing its deadline."""
        bucket = self.running.pop(item, None)
        if bucket is not None:
            bucket.discard(item)
            return False
        if item in self.overdue:
            self.overdue.discard(item)
            return True
        return False

    def _arm(self, tick: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = tick
        # At least a millisecond: uvloop's timers count whole milliseconds, and a timer
        # that fires a hair early must not spin until the tick comes.
        delay = max(0.001, tick * TICK - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = self._armed = None
        now = time.monotonic()
        ticks = self._ticks
        while ticks and ticks[0] * TICK <= now:
            for item in list(self._buckets.pop(heapq.heappop(ticks), ())):
                if self.running.pop(item, None) is not None:  # not forgotten meanwhile
                    self.overdue.add(item)
                    item.cancel()
        if ticks:
            self._arm(ticks[0])

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._armed = None

"""What a flood of `$SRV.*` requests may cost: bodies built seldom, bytes sent bounded.

NATS micro requests come from anyone, and the reply subject is the requester's choice: an
answer per request, built per request, would let a stranger make an `up` spend its CPU
building STATS of a thousand names and send megabytes to a subject of their choosing. So
a body is built at most once per freshness window (longer when building is slow) and kept
as bytes, and answers draw on a byte budget per second; past it, requests are dropped.
The flooder waits for answers that never come; the agents keep their event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

FRESH = 0.25  # seconds a built body is reused
SLOW_FACTOR = 10  # ...or ten times what building it took, if that is longer
BYTES_PER_SECOND = 2 * 1024 * 1024  # answers sent, all verbs together
BURST = 4 * 1024 * 1024


class BodyCache:
    """One built body per verb, reused while fresh."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.built = 0  # bodies built since start (a flood must not raise this much)
        self._bodies: dict[str, tuple[float, bytes]] = {}

    def get(self, verb: str, build: Callable[[], bytes]) -> bytes:
        now = self.clock()
        cached = self._bodies.get(verb)
        if cached is not None and now < cached[0]:
            return cached[1]
        body = build()
        took = self.clock() - now
        self.built += 1
        self._bodies[verb] = (now + max(FRESH, SLOW_FACTOR * took), body)
        return body

    def clear(self) -> None:
        self._bodies.clear()


class ByteBudget:
    """A token bucket of bytes: `take(n)` says whether n more bytes may go out now."""

    def __init__(self, rate: float = BYTES_PER_SECOND, burst: float = BURST,
                 clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.dropped = 0  # requests left unanswered
        self._at = clock()

    def take(self, size: int) -> bool:
        now = self.clock()
        ceiling = max(self.burst, size)  # one body bigger than the burst still goes, alone
        self.tokens = min(ceiling, self.tokens + (now - self._at) * self.rate)
        self._at = now
        if self.tokens >= size:
            self.tokens -= size
            return True
        self.dropped += 1
        return False

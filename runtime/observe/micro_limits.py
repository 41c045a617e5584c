"""What a flood of `$SRV.*` requests may cost: bodies built seldom, bytes sent bounded.

NATS micro requests come from anyone, and the reply subject is the requester's choice: an
answer per request, built per request, would let a stranger make an `up` spend its CPU
building STATS of a thousand names and send megabytes to a subject of their choosing. So
answers draw on a byte budget per second (past it, requests are dropped before any work),
and a body is kept as bytes and built again only when what it says changed, and then at
most once per MIN_AGE (or ten times what building it took, if longer). The flooder waits
for answers that never come; the agents keep their event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

MIN_AGE = 0.01  # seconds a body is reused even when what it says has changed
SLOW_FACTOR = 10  # ...or ten times what building it took, if that is longer
BYTES_PER_SECOND = 2 * 1024 * 1024  # answers sent, all verbs together
BURST = 4 * 1024 * 1024


class BodyCache:
    """One built body per verb, reused while what it says is unchanged (its token)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.built = 0  # bodies built since start (a flood must not raise this much)
        self._bodies: dict[str, tuple[Hashable, float, bytes]] = {}  # token, reuse until, body

    def get(self, verb: str, token: Hashable, build: Callable[[], bytes]) -> bytes:
        now = self.clock()
        cached = self._bodies.get(verb)
        if cached is not None and (cached[0] == token or now < cached[1]):
            return cached[2]
        body = build()
        took = self.clock() - now
        self.built += 1
        self._bodies[verb] = (token, now + max(MIN_AGE, SLOW_FACTOR * took), body)
        return body

    def size(self, verb: str) -> int:
        """The size of the last body of `verb` (0 before the first)."""
        cached = self._bodies.get(verb)
        return len(cached[2]) if cached is not None else 0


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
        """Take `size` bytes if there are; else count a dropped request."""
        now = self.clock()
        ceiling = max(self.burst, size)  # one body bigger than the burst still goes, alone
        self.tokens = min(ceiling, self.tokens + (now - self._at) * self.rate)
        self._at = now
        if self.tokens >= size:
            self.tokens -= size
            return True
        self.dropped += 1
        return False

    def owe(self, size: int) -> None:
        """Bytes sent beyond what was taken (a body grew since its size was checked)."""
        self.tokens -= max(size, 0)

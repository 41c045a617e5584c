"""What a stop of `up` waits for, as the workers report it, and a stop cut short.

On SIGINT or SIGTERM every worker stops taking requests and reports how many it still
has in flight (and again whenever that changes while it drains), so the stop line can
say what it waits for. A second Ctrl-C ends the workers at once, and says what that
abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger("mesh-runtime")

REPORT_SECONDS = 1.0  # how long the stop line waits for every worker's count
EXIT_ABANDONED = 130  # `up` stopped at once by a second Ctrl-C (128 + SIGINT)


class Stopping:
    """The in-flight counts the workers of one `up` report while they stop."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}  # worker pid -> requests it has not answered
        self.abandoned = False  # a second signal cut the stop short
        self._reported = asyncio.Event()

    def report(self, pid: int, count: int) -> None:
        self.counts[pid] = max(0, count)
        self._reported.set()

    async def say_what_it_waits_for(self, pids: list[int], grace: float) -> None:
        """Log the stop line once every worker in `pids` reported (or after a second)."""
        deadline = asyncio.get_running_loop().time() + REPORT_SECONDS
        while any(pid not in self.counts for pid in pids):
            self._reported.clear()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reported.wait(), left)
        count = self.in_flight(pids)
        if not count:
            log.info("stopping: no request in flight")
            return
        log.info("stopping: finishing %s in flight (at most %gs; Ctrl-C again to stop at once)",
                 _requests(count), grace)

    def in_flight(self, pids: list[int]) -> int:
        """What the workers `pids` (those still running) said they have left."""
        return sum(self.counts.get(pid, 0) for pid in pids)

    def abandon(self, pids: list[int]) -> None:
        """Say what a stop at once leaves unanswered in the workers `pids` (the caller
        ends them)."""
        self.abandoned = True
        count = self.in_flight(pids)
        log.warning("stopping at once: %s abandoned", _requests(count) + " in flight"
                    if count else "no request in flight was")


def _requests(count: int) -> str:
    return f"{count} request{'' if count == 1 else 's'}"

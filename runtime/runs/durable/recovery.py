"""Finding durable runs to take over: those whose owner died, and parked ones that are due.

Every `up` keeps a view of `mesh-run-leases` from a KV watch (no polling: an idle mesh with
10,000 parked runs costs a dict and a heap). Every heartbeat interval, and when the
earliest parked run is due, it claims by compare-and-set each run that it serves and that
is either running under a dead instance (section 8's rule, read from `mesh-instances`) or
parked with its wake time past. Of several `up` processes, one wins each claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from runtime.nats.liveness import is_alive, open_instances, read_records
from runtime.runs.durable.leases import ENDED, PARKED, RUNNING, Lease, Leases, decode

log = logging.getLogger("mesh-runtime")
Resume = Callable[[Lease], Coroutine[Any, Any, None]]
MAX_CLAIMS_PER_SCAN = 64  # a flood of dead runs is taken a slice at a time


class LeaseBook:
    """This process's view of every lease, kept by a watch."""

    def __init__(self) -> None:
        self.leases: dict[str, Lease] = {}
        self.running: dict[str, Lease] = {}  # the running ones: scans skip the parked
        self.wakes: list[tuple[float, str]] = []  # (wake, run): a heap, stale entries allowed

    def seen(self, run: str, value: bytes | None, revision: int, deleted: bool) -> None:
        lease = None if deleted else (
            decode(run, value, revision) or Lease(run, "", "", RUNNING, None, None, revision))
        if lease is None or lease.state == ENDED:  # nothing to do for it: not kept in memory
            self.leases.pop(run, None)
            self.running.pop(run, None)
            return
        self.leases[run] = lease
        if lease.state == RUNNING:
            self.running[run] = lease
        else:
            self.running.pop(run, None)
        if lease.state == PARKED and lease.wake is not None:
            heapq.heappush(self.wakes, (lease.wake, run))

    def due(self, now: float) -> list[Lease]:
        """Parked runs whose wake time has passed (each once per wake time)."""
        found = []
        while self.wakes and self.wakes[0][0] <= now:
            wake, run = heapq.heappop(self.wakes)
            lease = self.leases.get(run)
            if lease is not None and lease.state == PARKED and lease.wake == wake:
                found.append(lease)
        return found

    def next_wake(self) -> float | None:
        return self.wakes[0][0] if self.wakes else None

    def orphans(self, mine: str) -> list[Lease]:
        """Running leases of other instances (whether their owner lives is checked after)."""
        return [lease for lease in self.running.values() if lease.instance != mine]


class Recovery:
    """Watches the leases and claims the runs this process should take over."""

    def __init__(self, nc: Any, leases: Leases, instance: str, interval: float,
                 serves: Callable[[str], bool], resume: Resume,
                 runs_here: Callable[[str], bool] = lambda run: False,
                 changed: Callable[[Lease | None, str], None] = lambda lease, run: None):
        self.nc = nc
        self.leases = leases
        self.instance = instance
        self.interval = interval
        self.serves = serves
        self.resume = resume
        self.book = LeaseBook()
        self._tasks: list[asyncio.Task[Any]] = []
        self._kick = asyncio.Event()
        self._resuming: set[asyncio.Task[Any]] = set()
        self._watcher: Any = None
        self.runs_here = runs_here
        self.changed = changed  # told of every lease change (a run here may have been taken)
        self._suspects: set[str] = set()  # leases naming us that we did not run at the last scan

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._watch()), loop.create_task(self._scan_loop())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await _stop(self._watcher)  # a JetStream subscription left open holds up a drain

    async def _watch(self) -> None:
        while True:
            try:
                await _stop(self._watcher)
                watcher = self._watcher = await self.leases.kv.watchall()
                while True:
                    entry = await watcher.updates(timeout=3600)
                    if entry is None:  # the initial values are all in: look at them now
                        self._kick.set()
                        continue
                    self.book.seen(entry.key, entry.value, entry.revision or 0,
                                   entry.operation in ("DEL", "PURGE"))
                    self.changed(self.book.leases.get(entry.key), entry.key)
                    if self.book.next_wake() is not None:
                        self._kick.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # timeouts of an idle watch, a reconnect: watch again
                log.debug("lease watch restarted: %s", exc or type(exc).__name__)
                await asyncio.sleep(min(self.interval, 1.0))

    async def _scan_loop(self) -> None:
        while True:
            wait = self.interval
            wake = self.book.next_wake()
            if wake is not None:
                wait = max(0.0, min(wait, wake - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=wait)
            self._kick.clear()
            try:
                await self.scan()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("durable run scan skipped: %s", exc or type(exc).__name__)

    async def scan(self) -> int:
        """Claim and resume what is due or orphaned; how many runs this process took."""
        candidates = [lease for lease in self.book.due(time.time())
                      if self.serves(lease.pipeline)]
        orphans = [lease for lease in self.book.orphans(self.instance)
                   if self.serves(lease.pipeline)]
        if orphans:
            kv = await open_instances(self.nc.jetstream(timeout=5))
            owners = {lease.instance for lease in orphans if lease.instance}
            records = await read_records(kv, owners) if kv is not None and owners else {}
            now = time.time()
            candidates += [lease for lease in orphans
                           if not is_alive(records.get(lease.instance), now)]
        candidates += self._not_ours()
        taken = 0
        for lease in candidates[:MAX_CLAIMS_PER_SCAN]:
            claimed = await self.leases.claim(lease, self.instance)
            if claimed is None:
                continue  # another instance was quicker, or the lease changed meanwhile
            taken += 1
            task = asyncio.get_running_loop().create_task(self.resume(claimed))
            self._resuming.add(task)
            task.add_done_callback(self._resuming.discard)
        if len(candidates) > MAX_CLAIMS_PER_SCAN:
            self._kick.set()
        return taken

    def _not_ours(self) -> list[Lease]:
        """Leases that name this instance for a run it does not run (another client wrote
        them): claimed like a dead owner's, once seen at two scans in a row (a run being
        started has its lease a moment before its task)."""
        named = {lease.run: lease for lease in self.book.running.values()
                 if lease.instance == self.instance
                 and not self.runs_here(lease.run) and self.serves(lease.pipeline)}
        found = [lease for run, lease in named.items() if run in self._suspects]
        self._suspects = set(named)
        return found

    async def wake(self, run: str, signal: str) -> bool | None:
        """A signal arrived: claim the run if it is parked waiting for it and served here.
        True: woken; False: nothing to wake; None: parked for it, but served elsewhere."""
        lease = await self.leases.get(run)
        if lease is None or lease.state != PARKED or lease.signal != signal:
            return False
        if not self.serves(lease.pipeline):
            return None
        claimed = await self.leases.claim(lease, self.instance)
        if claimed is None:
            return False
        task = asyncio.get_running_loop().create_task(self.resume(claimed))
        self._resuming.add(task)
        task.add_done_callback(self._resuming.discard)
        return True


async def _stop(watcher: Any) -> None:
    if watcher is not None:
        try:
            await watcher.stop()
        except Exception as exc:  # the connection is going anyway
            log.debug("lease watch not stopped: %s", exc)

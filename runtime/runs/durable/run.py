"""One durable run while it runs here: the step protocol, waits and sleeps, and the lease.

`DurableRun.step` is the one place that owns the step protocol: a step already recorded in
the journal returns its recorded output, without a call and without an event; any other
runs (its calls carrying `X-Mesh-Idempotency-Key: <run>/<step>`), then its `step_finished`
is stored, with JetStream's ack, before the engine may use the output; and only while this
instance still holds the run's lease (compare-and-set), so two instances never both record.
Retries, fallbacks and progress wrap around this place; they never duplicate it.

The run itself is found through a ContextVar (`CURRENT`), so the engine, its steps and the
wait and sleep nodes never pass it by hand.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from runtime.core.idempotency import IDEMPOTENCY_KEY, idempotency_key
from runtime.core.protocol import TIMEOUT
from runtime.pipeline.steps import StepFailure, seconds_text
from runtime.runs.durable.journal_io import NO_SIGNAL, JournalIO
from runtime.runs.durable.leases import Lease, LeaseLost, Leases

PARK_AFTER = 2.0  # a sleep with less than this left waits in memory; longer ones park


class Parked(BaseException):
    """The run is parked (a wait or a sleep): its task ends, its lease says when it wakes."""


CURRENT: ContextVar[DurableRun | None] = ContextVar("mesh_durable_run", default=None)
STEP: ContextVar[str | None] = ContextVar("mesh_durable_step", default=None)


class DurableRun:
    """A durable run's state in this process: its lease and what the journal recorded."""

    def __init__(self, run: str, lease: Lease, leases: Leases, journal: JournalIO,
                 recorded: dict[str, Any] | None = None,
                 waits: dict[str, float | None] | None = None):
        self.run = run
        self.lease = lease
        self.leases = leases
        self.journal = journal
        self.recorded = recorded or {}  # step path -> recorded output
        self.waits = waits or {}  # step path -> the deadline recorded when it first waited
        self._lock = asyncio.Lock()  # one lease change at a time (parallel steps finish together)

    @property
    def replaying(self) -> bool:
        return bool(self.recorded)

    async def step(self, path: str, run: Callable[[], Awaitable[Any]]) -> Any:
        """The step's recorded output, or run it and record it first (see the module doc)."""
        if path in self.recorded:
            return self.recorded[path]
        key_token = IDEMPOTENCY_KEY.set(idempotency_key(self.run, path))
        step_token = STEP.set(path)
        try:
            output = await run()
        finally:
            STEP.reset(step_token)
            IDEMPOTENCY_KEY.reset(key_token)
        await self.hold()
        await self.journal.append(self.run, self.lease.pipeline, "step_finished",
                                  {"step": path, "output": output})
        self.recorded[path] = output
        return output

    async def hold(self) -> None:
        """Renew the lease by compare-and-set; LeaseLost when another instance took the run."""
        async with self._lock:
            self.lease = await self.leases.swap(self.lease, self.lease)

    # -- wait and sleep steps (runtime.pipeline.wait_steps.Waits) ----------------------------

    async def signal(self, name: str, timeout: float | None) -> Any:
        path = STEP.get() or name
        found = await self.journal.last_signal(self.run, name)
        if found is not NO_SIGNAL:
            return found
        until = await self._deadline(path, "wait", timeout, name)
        if until is not None and time.time() >= until:
            raise StepFailure(TIMEOUT, f"signal '{name}' did not arrive within "
                              f"{seconds_text(timeout or 0)}")
        async with self._lock:
            self.lease = await self.leases.park(self.lease, until, name)
        # A signal stored after the first look but before the lease said "parked" was not
        # taken by anyone: look once more, and if it is there, take the run back.
        found = await self.journal.last_signal(self.run, name)
        if found is not NO_SIGNAL:
            async with self._lock:
                claimed = await self.leases.claim(self.lease, self.lease.instance)
            if claimed is None:
                raise LeaseLost(self.run)  # whoever woke it runs it now
            self.lease = claimed
            return found
        raise Parked(self.run)

    async def sleep(self, seconds: float) -> None:
        path = STEP.get() or "sleep"
        until = await self._deadline(path, "sleep", seconds, None)
        assert until is not None
        left = until - time.time()
        if left <= 0:
            return
        if left < PARK_AFTER:
            await asyncio.sleep(left)
            return
        async with self._lock:
            self.lease = await self.leases.park(self.lease, until, None)
        raise Parked(self.run)

    async def _deadline(self, path: str, kind: str, seconds: float | None,
                        signal: str | None) -> float | None:
        """When the wait at `path` ends: recorded (with ack) the first time it starts, so a
        resumed run waits only for what is left."""
        if path in self.waits:
            return self.waits[path]
        until = None if seconds is None else round(time.time() + seconds, 3)
        await self.hold()
        await self.journal.append(self.run, self.lease.pipeline, "step_waiting",
                                  {"step": path, "kind": kind, "signal": signal, "until": until})
        self.waits[path] = until
        return until

"""Every trigger one process runs, applied as a difference like agents are: a reload starts
new triggers, stops removed ones (letting their requests in flight finish), and restarts
changed ones; triggers that did not change are not touched. A start is the same step from
no triggers at all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from nats.aio.client import Client

from runtime.load.mesh import Mesh
from runtime.load.triggercheck import TriggerDef
from runtime.triggers.schedule import ScheduleTrigger
from runtime.triggers.stream import StreamTrigger
from runtime.triggers.subject import SubjectTrigger
from runtime.triggers.supervised import Supervised

log = logging.getLogger("mesh-runtime")
RELOAD_GRACE = 30.0  # a removed trigger's requests in flight may finish within this


class _Loop(Protocol):
    async def run(self) -> None: ...
    async def stop(self, grace: float) -> None: ...


class Running:
    """One trigger: its subscription (subject, event) or its supervised loop."""

    def __init__(self, nc: Client, trigger: TriggerDef, instance: str):
        self.trigger = trigger
        self.subscriber: SubjectTrigger | None = None
        self.loop: _Loop | None = None
        self.supervised: Supervised | None = None
        what = f"trigger {trigger.describe()} of {trigger.target}"
        if trigger.kind in ("subject", "event"):
            self.subscriber = SubjectTrigger(nc, trigger)
        else:
            loop: _Loop = (ScheduleTrigger(nc, trigger, instance) if trigger.kind == "schedule"
                           else StreamTrigger(nc, trigger))
            self.loop = loop
            self.supervised = Supervised(what, loop.run, logging.getLogger(
                f"mesh-runtime.agent.{trigger.target}"))

    @property
    def firing(self) -> Any:
        return (self.subscriber or self.loop).firing  # type: ignore[union-attr]

    async def start(self) -> None:
        if self.subscriber is not None:
            await self.subscriber.start()
        else:
            assert self.supervised is not None
            self.supervised.start()

    async def stop(self, grace: float) -> None:
        if self.subscriber is not None:
            await self.subscriber.stop(grace)
            return
        assert self.supervised is not None and self.loop is not None
        await self.supervised.stop()  # no new messages first
        await self.loop.stop(grace)


class Triggers:
    """The triggers of the mesh this process serves."""

    def __init__(self, nc: Client, instance: str):
        self.nc = nc
        self.instance = instance
        self.running: dict[str, Running] = {}
        self._leaving: set[asyncio.Task[None]] = set()

    async def apply(self, mesh: Mesh) -> tuple[list[str], list[str]]:
        """Run `mesh`'s triggers, changing only what differs; (started, stopped)."""
        wanted = {t.key: t for t in mesh.triggers}
        gone = [self.running.pop(key) for key in list(self.running) if key not in wanted]
        new = [Running(self.nc, t, self.instance) for key, t in wanted.items()
               if key not in self.running]
        for running in gone:  # in the background: a slow request never holds up a reload
            task = asyncio.get_running_loop().create_task(running.stop(RELOAD_GRACE))
            self._leaving.add(task)
            task.add_done_callback(self._leaving.discard)
        for running in new:
            await running.start()
            self.running[running.trigger.key] = running
        if new:
            try:  # subscriptions in place before anyone is told
                await self.nc.flush(timeout=5)
            except Exception as exc:
                log.warning("new trigger subscriptions not confirmed by NATS yet: %s",
                            exc or type(exc).__name__)
        stopped = _named(gone)
        started = _named(new)
        for text in stopped:
            log.info("trigger stopped: %s", text)
        for text in started:
            log.info("trigger started: %s", text)
        return started, stopped

    async def close(self, grace: float) -> None:
        """Stop every trigger; requests in flight get `grace` seconds."""
        running, self.running = list(self.running.values()), {}
        await asyncio.gather(*(r.stop(grace) for r in running), return_exceptions=True)
        if self._leaving:
            await asyncio.wait(list(self._leaving), timeout=grace)

    def counts(self) -> list[dict[str, Any]]:
        """What came of each trigger's messages, for status and tests."""
        return [{"target": r.trigger.target, **r.firing.snapshot()} for r in self.running.values()]


def _named(running: Sequence[Running]) -> list[str]:
    return [f"{r.trigger.target} {r.trigger.describe()}" for r in running]

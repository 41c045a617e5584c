"""Schedules: `cron` or `every`, firing once per tick across every `up` that serves the
target. Each process sleeps to the next tick, and the first to create the tick's key in
the `mesh-trigger-ticks` bucket (create-only) fires it; the others see the key and skip."""

from __future__ import annotations

import asyncio
import logging
import math
import time

from nats.aio.client import Client
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from runtime.load.triggercheck import TriggerDef
from runtime.triggers.inflight import InFlight
from runtime.triggers.message import TriggerMessage, coordinate_id
from runtime.triggers.request import Firing

TICKS_BUCKET = "mesh-trigger-ticks"
TICKS_KEEP = 3600.0  # a claim outlives any clock skew worth serving with
log = logging.getLogger("mesh-runtime")


def next_tick(trigger: TriggerDef, now: float) -> float:
    """The first tick after `now` (unix seconds, UTC)."""
    schedule = trigger.spec.schedule
    assert schedule is not None
    if schedule.every is not None:
        return (math.floor(now / schedule.every) + 1) * schedule.every
    from croniter import croniter

    return float(croniter(schedule.cron, now).get_next(float))


class ScheduleTrigger:
    """Sleeps to each tick, claims it, and fires the target once for it."""

    def __init__(self, nc: Client, trigger: TriggerDef, instance: str):
        self.nc = nc
        self.trigger = trigger
        self.instance = instance
        self.firing = Firing(nc, trigger)
        self.flight = InFlight()  # its tasks only (a tick each): a slow target skips no tick
        self.drift: list[float] = []  # seconds from each tick to its claim (last 1,000)

    async def run(self) -> None:
        """The loop (supervised)."""
        kv = await self._bucket()
        tick = next_tick(self.trigger, time.time())
        while True:
            await asyncio.sleep(max(0.0, tick - time.time()))
            if time.time() < tick:  # woke a hair early: timers round
                continue
            self.flight.spawn(self._tick(kv, tick))
            tick = next_tick(self.trigger, max(tick, time.time()))

    async def stop(self, grace: float) -> None:
        await self.flight.finish(grace)

    async def _tick(self, kv: KeyValue, tick: float) -> None:
        target, stamp = self.trigger.target, int(tick * 1000)
        try:
            await kv.create(f"{target}.{self.trigger.tag}.{stamp}", self.instance.encode())
        except KeyWrongLastSequenceError:
            return  # another process took this tick
        except Exception as exc:
            self.firing.logger.warning("schedule of %s: tick not claimed (%s); skipped",
                                       target, exc)
            return
        self.drift = [*self.drift[-999:], time.time() - tick]
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(tick)) + f".{stamp % 1000:03d}Z"
        message = TriggerMessage("", b"{}", {}, value={"tick": at, "at": tick})
        run_key = coordinate_id(target, "tick", self.trigger.tag, stamp)
        await self.firing.fire(message, run_key, run_key)

    async def _bucket(self) -> KeyValue:
        js = self.nc.jetstream(timeout=5)
        try:
            return await js.key_value(TICKS_BUCKET)
        except BucketNotFoundError:
            try:
                return await js.create_key_value(bucket=TICKS_BUCKET, history=1, ttl=TICKS_KEEP)
            except Exception:  # another process made it meanwhile
                return await js.key_value(TICKS_BUCKET)

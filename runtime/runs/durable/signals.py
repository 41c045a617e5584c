"""Signals to parked runs: `mesh.run.<run>.signal.<name>`, stored by the journal's stream.

A signal is a message in MESH_RUNS, so it survives every `up` being down. All `up`
processes share one durable pull consumer over the signal subjects: each signal is handed
to one of them, which wakes the run if it is parked waiting for that signal (a claim by
compare-and-set). A run that is not parked yet finds the signal in the journal itself
when it reaches its wait step. A signal for a run nobody serves here is handed back (nak)
for another `up`, a bounded number of times; one for an unknown run is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig

from runtime.runs.events import STREAM

log = logging.getLogger("mesh-runtime")
CONSUMER = "mesh-run-signals"
SUBJECTS = "mesh.run.*.signal.*"
MAX_DELIVER = 20
Wake = Callable[[str, str], Awaitable[bool | None]]


def parse_subject(subject: str) -> tuple[str, str] | None:
    """(run, name) of a signal subject, or None."""
    parts = subject.split(".")
    if len(parts) != 5 or parts[:2] != ["mesh", "run"] or parts[3] != "signal":
        return None
    return parts[2], parts[4]


class Signals:
    """This process's share of the signal consumer."""

    def __init__(self, nc: Any, wake: Wake, interval: float):
        self.js = nc.jetstream(timeout=5)
        self.wake = wake
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None

    async def start(self) -> None:
        config = ConsumerConfig(durable_name=CONSUMER, filter_subject=SUBJECTS,
                                ack_policy=AckPolicy.EXPLICIT, max_deliver=MAX_DELIVER,
                                ack_wait=30)
        try:
            await self.js.add_consumer(STREAM, config)
        except Exception as exc:  # made by another `up` with the same settings: fine
            log.debug("signal consumer: %s", exc)
        sub = self._sub = await self.js.pull_subscribe_bind(CONSUMER, STREAM)
        self._task = asyncio.get_running_loop().create_task(self._loop(sub))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._sub is not None:  # a JetStream subscription left open holds up a drain
            try:
                await self._sub.unsubscribe()
            except Exception as exc:
                log.debug("signal subscription not ended: %s", exc)

    async def _loop(self, sub: Any) -> None:
        while True:
            try:
                batch = await sub.fetch(16, timeout=max(self.interval, 1.0))
            except asyncio.CancelledError:
                raise
            except Exception:  # nothing arrived in time (or a reconnect): ask again
                continue
            for msg in batch:
                try:
                    await self._one(msg)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("signal %s not handled: %s", msg.subject, exc)
                    await msg.nak(delay=self.interval)

    async def _one(self, msg: Any) -> None:
        where = parse_subject(msg.subject)
        if where is None:
            await msg.ack()
            return
        run, name = where
        woken = await self.wake(run, name)
        if woken is None:  # another `up` serves its pipeline: let it have the signal
            await msg.nak(delay=self.interval)
            return
        if woken:
            log.info("durable run %s woke on signal '%s'", run, name)
        await msg.ack()

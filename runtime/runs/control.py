"""Cancelling a run: every `up` listens on `mesh.runs.cancel.<run id>` (outside the journal's
subjects), and the one running the run cancels it and answers; `cancel_run` is the client.

Anyone who may publish on the mesh may cancel a run, as anyone may call an agent; NATS
permissions on `mesh.runs.cancel.>` restrict it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from runtime.core.text import is_request_id
from runtime.runs.active import Runs
from runtime.runs.events import CANCEL_PREFIX
from runtime.runs.reader import check_run_id

log = logging.getLogger("mesh-runtime.runs")


class RunControl:
    """The cancel subscription of one process."""

    def __init__(self, nc: Client, runs: Runs):
        self.nc = nc
        self.runs = runs
        self.subscription: Subscription | None = None

    async def start(self) -> None:
        self.subscription = await self.nc.subscribe(CANCEL_PREFIX + "*", cb=self._on_cancel)

    async def stop(self) -> None:
        if self.subscription is not None:
            with contextlib.suppress(Exception):  # closing: nothing more will arrive
                await self.subscription.unsubscribe()
            self.subscription = None

    async def _on_cancel(self, msg: Msg) -> None:
        run_id = msg.subject[len(CANCEL_PREFIX):]
        if not is_request_id(run_id) or not self.runs.cancel(run_id):
            return  # not a run of this process: its owner answers
        log.info("run %s cancelled", run_id)
        if msg.reply and msg.reply[:1] != "$":  # never answer into JetStream's API
            body = orjson.dumps({"run": run_id, "cancelled": True,
                                 "instance": self.runs.instance})
            with contextlib.suppress(Exception):
                await self.nc.publish(msg.reply, body)


async def cancel_run(nc: Client, run_id: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """Ask the process running `run_id` to cancel it: its answer, or None when no process
    runs it (it ended, or never started)."""
    check_run_id(run_id)
    try:
        reply = await nc.request(CANCEL_PREFIX + run_id, b"", timeout=timeout)
    except Exception:  # no responders, or nobody answered in time
        return None
    try:
        answer = orjson.loads(reply.data)
    except orjson.JSONDecodeError:
        return None
    return answer if isinstance(answer, dict) else None

"""A handler's `ctx.progress(fraction, message)`: a `step_progress` event in the run journal.

The handler may run in any process; its request id is the id of the run that called it, so
the event goes straight to `mesh.run.<id>.step_progress`, in the journal's event shape
(runtime.runs.events), with the agent's name. Published without an ack: progress is a
hint, and it never fails or slows the handler.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from nats.aio.client import Client

log = logging.getLogger("mesh-runtime.runs")

SUBJECT = "mesh.run.{}.step_progress"
MAX_MESSAGE = 2048


async def publish_progress(nc: Client, run_id: str, agent: str, fraction: float | None,
                           message: str) -> None:
    """Publish one step_progress event; a fraction outside 0..1 is clamped, not refused."""
    if fraction is not None:
        fraction = float(fraction)
        fraction = None if fraction != fraction else min(max(fraction, 0.0), 1.0)  # NaN: none
    event: dict[str, Any] = {
        "run": run_id, "pipeline": None, "event": "step_progress", "at": time.time(),
        "step": None, "attempt": None, "trace_id": None, "agent": agent,
        "progress": fraction, "message": str(message)[:MAX_MESSAGE]}
    try:
        await nc.publish(SUBJECT.format(run_id), orjson.dumps(event))
    except Exception as exc:  # progress is a hint: the handler goes on
        log.debug("progress of run %s not published: %s", run_id, exc)

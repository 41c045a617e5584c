"""What durable runs read of the run journal (runtime.runs.reader underneath): one run's
events to resume from, and the last signal of a name sent to a run."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from nats.js.errors import NotFoundError

from runtime.core import protocol as p
from runtime.runs import events as ev
from runtime.runs.reader import read_run

log = logging.getLogger("mesh-runtime")

NO_SIGNAL: Any = object()  # last_signal's answer when none has been sent


class JournalGone(p.MeshError):
    """The journal cannot take or give an event (its stream was deleted, JetStream is down):
    a durable run cannot promise anything more, so it fails with this clear error."""

    def __init__(self, run: str, reason: str):
        super().__init__(p.HANDLER_ERROR, f"durable run {run} cannot be recorded: {reason} (the "
                         f"run journal, JetStream stream {ev.STREAM}, is needed by durable runs; "
                         "`mesh-runtime up` creates it at start)", request_id=run)


def signal_subject(run: str, name: str) -> str:
    return f"{ev.SUBJECT_PREFIX}{run}.signal.{name}"


async def run_events(nc: Any, run: str) -> list[dict[str, Any]]:
    """The run's readable events, oldest first ([] for an unknown run)."""
    try:
        records = await read_run(nc, run)
    except Exception as exc:
        raise JournalGone(run, str(exc) or type(exc).__name__) from None
    return [r.event for r in records if r.event is not None]


async def last_signal(js: Any, run: str, name: str) -> Any:
    """The JSON of the last signal `name` sent to `run`, or NO_SIGNAL."""
    try:
        msg = await js.get_last_msg(ev.STREAM, signal_subject(run, name))
    except NotFoundError:
        return NO_SIGNAL
    except Exception as exc:
        raise JournalGone(run, str(exc) or type(exc).__name__) from None
    try:
        return orjson.loads(msg.data) if msg.data else None
    except orjson.JSONDecodeError:
        log.warning("run %s: signal '%s' is not JSON; ignored", run, name)
        return NO_SIGNAL

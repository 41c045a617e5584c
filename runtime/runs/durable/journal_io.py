"""What durable runs need of the run journal (stream MESH_RUNS): events stored with ack, one
run's events read back in order, and the last signal of a name sent to a run."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

from nats.js.errors import NotFoundError

from runtime.core import protocol as p

log = logging.getLogger("mesh-runtime")

STREAM = "MESH_RUNS"
NO_SIGNAL: Any = object()  # last_signal's answer when none has been sent
MAX_EVENTS = 100_000  # a run's events read back at most (a run is bounded by its steps)


class JournalGone(p.MeshError):
    """The journal cannot take the event (its stream was deleted, JetStream is down): a
    durable run cannot promise anything more, so it fails with this clear error."""

    def __init__(self, run: str, reason: str):
        super().__init__(p.HANDLER_ERROR, f"durable run {run} cannot be recorded: {reason} (is "
                         f"the {STREAM} stream there? `up` recreates it at its next start)",
                         request_id=run)


class JournalIO(Protocol):
    async def append(self, run: str, pipeline: str, event: str,
                     fields: dict[str, Any]) -> None: ...
    async def events(self, run: str) -> list[dict[str, Any]]: ...
    async def last_signal(self, run: str, name: str) -> Any: ...


def signal_subject(run: str, name: str) -> str:
    return f"mesh.run.{run}.signal.{name}"


class JetStreamJournal:
    """JournalIO over JetStream."""

    def __init__(self, nc: Any):
        self.nc = nc
        self.js = nc.jetstream(timeout=5)

    async def append(self, run: str, pipeline: str, event: str,
                     fields: dict[str, Any]) -> None:
        body = {"run": run, "pipeline": pipeline, "event": event,
                "at": round(time.time(), 6), **fields}
        try:
            await self.js.publish(f"mesh.run.{run}.{event}", json.dumps(body).encode(),
                                  stream=STREAM)
        except Exception as exc:
            raise JournalGone(run, str(exc) or type(exc).__name__) from None

    async def events(self, run: str) -> list[dict[str, Any]]:
        """The run's events, oldest first (signals excluded); [] when it has none."""
        try:
            sub = await self.js.pull_subscribe(f"mesh.run.{run}.>", stream=STREAM)
        except Exception as exc:
            raise JournalGone(run, str(exc) or type(exc).__name__) from None
        found: list[dict[str, Any]] = []
        try:
            left = min((await sub.consumer_info()).num_pending, MAX_EVENTS)
            while left > 0:
                batch = await sub.fetch(min(left, 256), timeout=5)
                for msg in batch:
                    left -= 1
                    event = _event(msg.data)
                    if event is not None and ".signal." not in msg.subject:
                        found.append(event)
        finally:
            try:
                await sub.unsubscribe()
            except Exception as exc:
                log.debug("could not end a journal read: %s", exc)
        return found

    async def last_signal(self, run: str, name: str) -> Any:
        try:
            msg = await self.js.get_last_msg(STREAM, signal_subject(run, name))
        except NotFoundError:
            return NO_SIGNAL
        except Exception as exc:
            raise JournalGone(run, str(exc) or type(exc).__name__) from None
        try:
            return json.loads(msg.data) if msg.data else None
        except ValueError:
            log.warning("run %s: signal '%s' is not JSON; ignored", run, name)
            return NO_SIGNAL


def _event(data: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(data)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None

"""Core NATS triggers: a `subject` (queue group q.trigger.<name>, so one instance takes each
message) and another agent's `event`s (mesh.agent.<from>.events, filtered by ce-type).

At most the target's `concurrency` messages are in flight per process; past that the
subscription's own bounded buffer holds the rest, so a flood costs bounded memory."""

from __future__ import annotations

import contextlib
import hashlib

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from runtime.core.events import HDR_CE_ID, HDR_CE_TYPE, events_subject
from runtime.core.requestids import new_request_id
from runtime.load.triggercheck import TriggerDef
from runtime.serve.admission import PENDING_BYTES, PENDING_MSGS
from runtime.triggers.inflight import InFlight
from runtime.triggers.message import TriggerMessage, coordinate_id
from runtime.triggers.request import Firing

HDR_MSG_ID = "Nats-Msg-Id"


class SubjectTrigger:
    """A `subject:` or `event:` trigger: one subscription in the target's trigger group."""

    def __init__(self, nc: Client, trigger: TriggerDef):
        self.nc = nc
        self.trigger = trigger
        self.firing = Firing(nc, trigger)
        self.flight = InFlight(trigger.concurrency)
        self.subscription: Subscription | None = None
        target = trigger.target
        if trigger.spec.event is not None:
            self.subject = events_subject(trigger.spec.event.from_)
            self.type = trigger.spec.event.type
            self.queue = f"q.trigger.{target}.{trigger.tag}"  # per trigger: types may differ
        else:
            assert trigger.spec.subject is not None
            self.subject, self.type = trigger.spec.subject, None
            self.queue = f"q.trigger.{target}"

    async def start(self) -> None:
        self.subscription = await self.nc.subscribe(
            self.subject, queue=self.queue, cb=self._on_message,
            pending_msgs_limit=PENDING_MSGS, pending_bytes_limit=PENDING_BYTES)

    async def stop(self, grace: float) -> None:
        """Stop taking messages; those in flight get `grace` seconds to finish."""
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        await self.flight.finish(grace)

    async def _on_message(self, msg: Msg) -> None:
        headers = msg.headers or {}
        if self.type is not None and headers.get(HDR_CE_TYPE) != self.type:
            return
        await self.flight.slots.acquire()  # holds this subscription's delivery while all are busy
        self.flight.spawn(self._handle(msg, headers))

    async def _handle(self, msg: Msg, headers: dict[str, str]) -> None:
        try:
            message = TriggerMessage(msg.subject, msg.data, dict(headers))
            await self.firing.fire(message, new_request_id(), self._run_key(headers))
        finally:
            self.flight.slots.release()

    def _run_key(self, headers: dict[str, str]) -> str | None:
        """From the publisher's own message id (an event's ce-id, a Nats-Msg-Id): the same
        message published twice starts one run."""
        given = headers.get(HDR_CE_ID if self.trigger.spec.event is not None else HDR_MSG_ID)
        if not given:
            return None
        digest = hashlib.sha256(given.encode()).hexdigest()[:32]  # the sender's text: hashed
        return coordinate_id(self.trigger.target, self.trigger.kind, digest)

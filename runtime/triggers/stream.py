"""JetStream triggers: a `stream` (a durable pull consumer named after the target) and a
`kv` bucket (the same, on the bucket's own stream; every put, deletes skipped).

The ack decision is made in one place, `_decide`, once the request has ended: ack on
success; dead letter and ack for input the target refuses or after `max_deliver` tries;
else nak with a doubling delay. A request cut short by a shutdown decides nothing: the
message comes back after `ack_wait`. The consumer itself never gives up on a message
(its own max_deliver is unlimited), so a crash during the last try still ends in a dead
letter, never in a message left behind."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError

from runtime.core import protocol as p
from runtime.core.text import shown
from runtime.load.triggercheck import TriggerDef
from runtime.triggers.deadletter import dead_headers, dead_letter, ensure_dead_stream
from runtime.triggers.inflight import InFlight
from runtime.triggers.message import TriggerMessage, coordinate_id
from runtime.triggers.request import Firing, still_running

TERMINAL = frozenset({p.INVALID_INPUT, p.INVOCATION_MISMATCH})  # trying again changes nothing
FETCH_WAIT = 5.0  # a fetch's long poll: an idle trigger asks the server once per this
KV_OPERATION = "KV-Operation"
ACK_PREFIX = "$JS.ACK."


def consumer_name(target: str) -> str:
    """The durable consumer of `target` (dots are not allowed in consumer names)."""
    return "mesh-trigger-" + target.replace(".", "_")


class StreamTrigger:
    """Pulls from one durable consumer while the loop runs; each message is one request."""

    def __init__(self, nc: Client, trigger: TriggerDef):
        self.nc = nc
        self.trigger = trigger
        self.firing = Firing(nc, trigger)
        self.flight = InFlight(trigger.concurrency)
        self.slots = self.flight.slots
        spec = trigger.spec
        if spec.kv is not None:
            self.stream, self.filter = f"KV_{spec.kv.bucket}", f"$KV.{spec.kv.bucket}.{spec.kv.key}"
            self.key_at = len(f"$KV.{spec.kv.bucket}.")
            self.max_deliver, self.ack_wait, self.backoff, self.max_backoff = 5, 30.0, 1.0, 60.0
            self.deliver = api.DeliverPolicy.NEW
        else:
            assert spec.stream is not None
            s = spec.stream
            self.stream, self.filter, self.key_at = s.stream, s.subject, 0
            self.max_deliver, self.ack_wait = s.max_deliver, s.ack_wait
            self.backoff, self.max_backoff = s.backoff, s.max_backoff
            self.deliver = api.DeliverPolicy.ALL if s.deliver == "all" else api.DeliverPolicy.NEW
        self.durable = consumer_name(trigger.target)
        self._said_dead = -1.0
        self.prefix = coordinate_id(trigger.target, self.stream)  # of every run key
        self.working: dict[int, tuple[Msg, float]] = {}  # id(msg): requests running, since

    async def run(self) -> None:
        """The loop (supervised): make sure of the stream and consumer, then pull."""
        await self._ensure()
        js = self.nc.jetstream(timeout=5)
        pull = await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        keepalive = asyncio.get_running_loop().create_task(self._keep_alive())
        try:
            while True:
                await self.slots.acquire()
                free = 1
                while not self.slots.locked() and free < 256:  # as many as there is room for
                    await self.slots.acquire()
                    free += 1
                try:
                    msgs = await pull.fetch(free, timeout=FETCH_WAIT)
                except TimeoutError:
                    msgs = []
                except BaseException:
                    for _ in range(free):
                        self.slots.release()
                    raise
                for _ in range(free - len(msgs)):
                    self.slots.release()
                # nats-py hands over messages left from an earlier fetch too: past the
                # slots taken, a message holds none (and so frees none)
                for index, msg in enumerate(msgs):
                    self.flight.spawn(self._handle(msg, index < free))
        finally:
            keepalive.cancel()
            with contextlib.suppress(Exception):
                await pull.unsubscribe()

    async def stop(self, grace: float) -> None:
        """Let the requests in flight finish (within `grace`); those cut short are not
        acked, so JetStream delivers them again."""
        await self.flight.finish(grace)

    async def _ensure(self) -> None:
        js = self.nc.jetstream(timeout=5)
        if self.trigger.spec.kv is not None:
            try:
                await js.key_value(self.trigger.spec.kv.bucket)
            except BucketNotFoundError:
                await js.create_key_value(bucket=self.trigger.spec.kv.bucket, history=1)
        else:
            try:
                await js.stream_info(self.stream)
            except NotFoundError:
                try:
                    await js.add_stream(name=self.stream, subjects=[self.filter])
                except BadRequestError:  # another process made it meanwhile
                    await js.stream_info(self.stream)
            await ensure_dead_stream(self.nc)
        config = api.ConsumerConfig(
            durable_name=self.durable, ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=self.deliver, filter_subject=self.filter, ack_wait=self.ack_wait,
            max_deliver=-1, max_ack_pending=max(1000, 4 * self.trigger.concurrency),
            description=f"mesh-runtime trigger of {self.trigger.target}")
        try:
            await js.add_consumer(self.stream, config)
        except BadRequestError as exc:  # settings a consumer cannot change: make it anew
            self.firing.logger.warning(
                "the consumer %s of stream %s cannot take the new settings (%s): it is made "
                "anew, starting from %s messages", self.durable, self.stream, exc.description,
                self.deliver.value)
            await js.delete_consumer(self.stream, self.durable)
            await js.add_consumer(self.stream, config)

    async def _handle(self, msg: Msg, holds_slot: bool = True) -> None:
        try:
            coordinates = self._coordinates(msg)
            if coordinates is None:  # not from our consumer: never answered, never acked
                return
            seq, delivered = coordinates
            headers = dict(msg.headers or {})
            if self.key_at and headers.get(KV_OPERATION) in ("DEL", "PURGE"):
                await msg.ack()
                return
            target = self.trigger.target
            run_key = f"{self.prefix}-{seq}"
            if len(run_key) > 120:  # a long name: hashed to fit a request id
                run_key = coordinate_id(self.prefix, seq)
            if delivered > self.max_deliver:  # the last try never ended (a crash): give up now
                error = p.MeshError(p.TIMEOUT, f"delivered {delivered} times; the last tries "
                                    "ended without an answer", agent=target)
            else:
                message = TriggerMessage(msg.subject, msg.data, headers,
                                         msg.subject[self.key_at:] if self.key_at else None)
                self.working[id(msg)] = (msg, time.monotonic())
                try:
                    found = await self.firing.fire(message, f"{run_key}-{delivered}", run_key)
                    while found is not None and still_running(found):
                        # A durable run of this run key goes on (resumed elsewhere after a
                        # crash): wait for its end within this delivery, kept alive.
                        self.firing.logger.info(
                            "message %s of stream %s: its run %s is still running; acked "
                            "once it ends", seq, self.stream, shown(str(found.details.get("run")), 80))
                        await asyncio.sleep(self.backoff)
                        found = await self.firing.fire(message, f"{run_key}-{delivered}",
                                                       run_key)
                finally:
                    del self.working[id(msg)]
                if found is None:
                    await msg.ack()
                    return
                error = found
            await self._decide(msg, error, headers, seq, delivered)
        except asyncio.CancelledError:
            raise  # cut short: no decision, so JetStream delivers it again
        except Exception as exc:  # the connection went: the message comes back after ack_wait
            self.firing.logger.warning("trigger %s: message not settled: %s",
                                       self.trigger.describe(), exc)
        finally:
            if holds_slot:
                self.slots.release()

    def _coordinates(self, msg: Msg) -> tuple[int, int] | None:
        """(stream sequence, delivery count) when the message came from this trigger's
        consumer; None for anything else. Anyone may publish to the pull inbox, and an ack
        is a publish to the message's reply subject: a forged reply
        (`$JS.API.STREAM.DELETE.X`) must never be published to."""
        reply = msg.reply or ""
        if reply.startswith(ACK_PREFIX):
            # $JS.ACK.<stream>.<consumer>.<delivered>.<seq>.<cseq>.<time>.<pending>, or with
            # <domain>.<account hash> after ACK and a token at the end (nats-server 2.10+)
            tokens = reply.split(".")
            at = 2 if len(tokens) == 9 else 4 if len(tokens) >= 11 else 0
            if (at and tokens[at] == self.stream and tokens[at + 1] == self.durable
                    and _count(tokens[at + 2]) and _count(tokens[at + 3])):
                return int(tokens[at + 3]), int(tokens[at + 2])
        self.firing.counts["forged"] += 1
        if self.firing.counts["forged"] == 1:  # said once: a flood must not flood the log
            self.firing.logger.warning("trigger %s: a message that did not come from its "
                                       "consumer was dropped (reply %s)",
                                       self.trigger.describe(), shown(reply, 80))
        return None

    async def _decide(self, msg: Msg, error: p.MeshError, headers: dict[str, str], seq: int,
                      delivered: int) -> None:
        refused = error.code in TERMINAL or (  # a pipeline whose step refused the input
            error.code == p.STEP_FAILED and error.details.get("code") in TERMINAL)
        if not refused and delivered < self.max_deliver:
            delay = min(self.backoff * 2 ** (delivered - 1), self.max_backoff)
            await msg.nak(delay=delay)
            return
        where: dict[str, Any] = {"stream": self.stream, "subject": msg.subject, "seq": seq,
                                 "deliveries": delivered}
        try:
            await dead_letter(self.nc, self.trigger.target, msg.data,
                              dead_headers(headers, error, where))
        except Exception as exc:  # not said anywhere yet: keep the message for another try
            self.firing.logger.warning("could not publish a dead letter (%s); the message "
                                       "stays in %s", exc, self.stream)
            await msg.nak(delay=self.max_backoff)
            return
        self.firing.counts["dead"] += 1
        now = asyncio.get_running_loop().time()
        if now - self._said_dead >= 1.0:  # at most a line a second: the rest are counted
            self._said_dead = now
            self.firing.logger.warning(
                "message %s of stream %s dead-lettered on mesh.dead.%s after %d tr%s: %s "
                "(%d so far)", seq, self.stream, self.trigger.target, delivered,
                "y" if delivered == 1 else "ies", error.code, self.firing.counts["dead"])
        await msg.ack()

    async def _keep_alive(self) -> None:
        """Tell JetStream which messages are still being worked on (those whose requests
        run longer than a third of ack_wait), so a long request is no redelivery."""
        period = self.ack_wait / 3
        while True:
            await asyncio.sleep(period)
            since = time.monotonic() - period
            for msg, started in list(self.working.values()):
                if started <= since:
                    with contextlib.suppress(Exception):
                        await msg.in_progress()


def _count(token: str) -> bool:
    return token.isascii() and token.isdigit()


"""The journal writer: run events into the JetStream stream MESH_RUNS, never in a run's way.

Events are queued for the connection's flusher without awaiting anything, and without asking
for JetStream's ack: a run never waits on the socket or the store.

What was lost is found by sampling: the last event of a run asks for an ack (answered on one
shared inbox) at most every ACK_EVERY seconds, and at every run's end while events are being
lost. A failed ack (no stream, a stream refusing messages, no leader) counts every event
queued since the previous ack request as dropped: such failures hit every message alike,
not one here and there. A publish that fails at once (connection down, buffer full) counts
too. The first drop logs a warning; the next success after drops logs how many were lost.
Nothing here raises into a run.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from runtime.nats.cluster import create_replicated, replica_choices
from runtime.nats.headerblock import queue_plain
from runtime.runs.events import STREAM, SUBJECTS, subject

log = logging.getLogger("mesh-runtime.runs")

MAX_UNACKED = 10_000  # ack requests not answered yet; older ones are forgotten
ACK_EVERY = 0.5  # seconds between two ack requests while events are stored


class Journal:
    """Publishes one process's run events; `dropped` counts those known lost."""

    def __init__(self, nc: Client):
        self.nc = nc
        self.dropped = 0
        self.published = 0
        self._failing = False  # a drop was logged; the next success says so
        self._lost_since = 0
        self._inbox = nc.new_inbox()
        self._unacked: OrderedDict[str, int] = OrderedDict()  # ack token -> events it stands for
        self._token = 0
        self._since = 0  # events queued since the last ack request
        self._asked_at = 0.0
        self._subscribed = False

    @classmethod
    async def open(cls, nc: Client, keep: float, max_bytes: int,
                   quiet: bool = False) -> Journal | None:
        """The journal, with MESH_RUNS created or updated to `keep` seconds and `max_bytes`;
        None (and one warning) where JetStream is not available."""
        try:
            await ensure_stream(nc, keep, max_bytes)
        except Exception as exc:
            if not quiet:
                log.warning("runs are not recorded: JetStream stream %s is not available (%s); "
                            "pipelines are served as usual", STREAM, _short(exc))
            return None
        journal = cls(nc)
        await journal._subscribe()
        return journal

    async def _subscribe(self) -> None:
        try:
            await self.nc.subscribe(self._inbox + ".*", cb=self._acked)
            self._subscribed = True
        except Exception as exc:  # acks are how drops are seen; without them, say so
            log.warning("run events: cannot watch JetStream's acks (%s): drops go uncounted",
                        _short(exc))

    def publish(self, run_id: str, event: str, data: bytes, last: bool = False) -> None:
        """Queue one event for the connection's flusher, without waiting for anything. `last`
        (a run's last event) may ask for an ack (see the module's text). Not connected, or
        the socket not keeping up: dropped."""
        reply = token = ""
        self._since += 1
        if last and self._subscribed:
            now = time.monotonic()
            if self._failing or now - self._asked_at >= ACK_EVERY:
                self._asked_at = now
                self._token += 1
                token = str(self._token)
                reply = f"{self._inbox}.{token}"
                self._unacked[token], self._since = self._since, 0
                if len(self._unacked) > MAX_UNACKED:
                    self._unacked.popitem(last=False)
        why: object = "not connected to NATS, or its connection is not keeping up"
        try:
            queued = queue_plain(self.nc, subject(run_id, event), data, reply)
        except Exception as exc:  # nats-py internals changed under us: drop, never raise
            queued, why = False, exc
        if queued:
            self.published += 1
            return
        if token:  # not sent: the events it stood for are still unconfirmed
            self._since += self._unacked.pop(token, 0)
        self._since -= 1
        self.drop(1, why)

    def drop(self, count: int, why: object) -> None:
        """Count `count` events as lost; the first of a series logs a warning."""
        self.dropped += count
        self._lost_since += count
        if not self._failing:
            self._failing = True
            log.warning("run events are being dropped (%s); runs go on unrecorded until "
                        "JetStream takes them again (mesh_run_events_dropped_total counts them)",
                        _short(why))

    async def _acked(self, msg: Msg) -> None:
        token = msg.subject.rpartition(".")[2]
        events = self._unacked.pop(token, 0)
        problem = _ack_problem(msg)
        if problem is not None:
            self.drop(events or 1, problem)
        elif self._failing:
            self._failing = False
            log.warning("run events are recorded again (%d lost)", self._lost_since)
            self._lost_since = 0


def _ack_problem(msg: Msg) -> str | None:
    """Why JetStream did not store the message, or None when it did."""
    status = msg.headers.get("Status") if msg.headers else None
    if status == "503":
        return "no JetStream stream answered"
    if status and status != "200":
        return f"JetStream status {status}"
    try:
        answer: Any = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        return "unreadable JetStream ack"
    if isinstance(answer, dict) and answer.get("error"):
        error = answer["error"]
        return str(error.get("description") if isinstance(error, dict) else error)
    return None


async def ensure_stream(nc: Client, keep: float, max_bytes: int) -> None:
    """Create MESH_RUNS, or bring an existing one to these limits."""
    js = nc.jetstream(timeout=5)

    def config(replicas: int) -> StreamConfig:
        return StreamConfig(
            name=STREAM, subjects=[SUBJECTS], retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE, discard=DiscardPolicy.OLD, max_age=keep,
            max_bytes=max_bytes, num_replicas=replicas)

    try:
        info = await js.stream_info(STREAM)
    except Exception:
        info = None
    if info is None:
        try:
            await create_replicated(lambda n: js.add_stream(config(n)), replica_choices(nc))
            return
        except Exception:
            # Another process (a worker of the same `up`) may have made it meanwhile.
            info = await js.stream_info(STREAM)
    current = info.config
    if current.max_age != keep or current.max_bytes != max_bytes:
        await js.update_stream(config(current.num_replicas or 1))


def _short(exc: object) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."

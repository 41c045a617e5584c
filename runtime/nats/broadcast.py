"""Scatter-gather: ask every agent offering a capability, gather their answers.

One publish on `mesh.broadcast.<c>` (no queue group, so every subscriber gets it) with a
reply inbox; answers are gathered until `within` has passed or every live answerer has
answered. How many are live comes from the catalog: the `x-instances` of each entry that
offers the capability, read while the answers arrive, so waiting for it costs nothing.
Without a catalog (no JetStream), the broadcast waits out `within`.

Anyone on the bus may answer, as often as they like: a broadcast keeps at most
`max_answers` answers (default 1,000) and 16 MB of answer bodies. Past either it stops
gathering, and its result ends with one more entry that says so (an `overloaded` error
with the counts), so a pipeline, a handler and the CLI all see that the list was cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from runtime.core import protocol as p
from runtime.core.bus import MAX_ANSWERS
from runtime.core.names import name_problem
from runtime.core.text import cut
from runtime.nats.caller import budget_header
from runtime.nats.guard import check_fits
from runtime.tracing import outgoing, send_span

MAX_ANSWER_BYTES = 16 * 1024 * 1024  # ... and by the bytes of the answers' bodies
PENDING_BYTES = 2 * MAX_ANSWER_BYTES  # what nats-py may buffer for the inbox before dropping
_SHORT = 256  # characters kept of an answer's agent and instance headers
INSTANCES = "x-instances"  # the catalog key listing the processes serving an entry
Count = Callable[[], Awaitable[int | None]]


class Broadcaster:
    """Broadcasts over one connection, their answers routed from one wildcard inbox
    subscription (no subscription per broadcast), each gathered in the subscription's
    callback: the caller wakes once, when the last answer is in."""

    def __init__(self, nc: Client):
        self.nc = nc
        self._prefix = ""
        self._sub: Any = None
        self._opening = asyncio.Lock()
        self._open: dict[str, _Gathering] = {}
        self._tokens = itertools.count()

    async def broadcast(self, capability: str, payload: Any, within: float,
                        request_id: str | None = None, answerers: Count | None = None,
                        max_answers: int = MAX_ANSWERS) -> list[dict[str, Any]]:
        """Every answer, in arrival order, as {agent, instance, status, result | error}."""
        if (problem := name_problem(capability, "capability")) is not None:
            raise p.MeshError(p.INVALID_INPUT, problem)  # before anything is published
        deadline = asyncio.get_running_loop().time() + within
        token = str(next(self._tokens))
        gathering = self._open[token] = _Gathering(max(max_answers, 0))
        counting: asyncio.Future[int | None] | None = None
        try:
            body = orjson.dumps(payload)
            subject, request_id = p.broadcast_subject(capability), request_id or uuid.uuid4().hex
            inbox = f"{await self._inbox()}.{token}"
            # A CLIENT span when recorded (it covers the publish, not the gathering).
            with send_span(subject, request_id) or contextlib.nullcontext(outgoing()) as trace:
                headers = {p.HDR_REQUEST_ID: request_id, p.HDR_TIMEOUT: budget_header(within),
                           **trace}
                check_fits(self.nc, body, headers, f"the payload for capability '{capability}'")
                await self.nc.publish(subject, body, reply=inbox, headers=headers)
            if answerers is not None:
                counting = asyncio.ensure_future(answerers())
                counting.add_done_callback(gathering.counted)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):  # one timer for the whole gathering
                    await asyncio.shield(gathering.done)
            return gathering.result(request_id or "")
        finally:
            del self._open[token]
            if counting is not None and not counting.done():
                counting.cancel()

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):  # the connection may already be gone
                await self._sub.unsubscribe()
            self._sub = None

    async def _inbox(self) -> str:
        if self._sub is None:
            async with self._opening:
                if self._sub is None:
                    prefix = self.nc.new_inbox()
                    self._sub = await self.nc.subscribe(f"{prefix}.*", cb=self._route,
                                                        pending_bytes_limit=PENDING_BYTES)
                    self._prefix = prefix
        return self._prefix

    async def _route(self, msg: Msg) -> None:
        gathering = self._open.get(msg.subject.rpartition(".")[2])
        if gathering is not None:  # else a late answer to a broadcast that has ended
            gathering.take(msg)


class _Gathering:
    """The answers of one broadcast, and a future set once every expected one is in (or
    once one more than it may keep has come)."""

    def __init__(self, max_answers: int) -> None:
        self.answers: list[dict[str, Any]] = []
        self.max_answers = max_answers
        self.bytes = 0
        self.cut_short = ""  # why it stopped gathering early, if it did
        self.expected: int | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def take(self, msg: Msg) -> None:
        if self.done.done():
            return
        headers = msg.headers or {}
        if headers.get("Status") == "503" and not msg.data:
            self.done.set_result(None)  # no responders: nobody subscribes to this capability
            return
        if len(self.answers) >= self.max_answers:
            self._stop(f"more than {self.max_answers} answers (max_answers)")
            return
        if self.bytes + len(msg.data) > MAX_ANSWER_BYTES:
            self._stop(f"more than {MAX_ANSWER_BYTES // (1024 * 1024)} MB of answers")
            return
        self.bytes += len(msg.data)
        self.answers.append(answer(msg))
        self._check()

    def _stop(self, why: str) -> None:
        self.cut_short = why
        self.done.set_result(None)

    def result(self, request_id: str) -> list[dict[str, Any]]:
        """The answers, and, when it stopped early, one more entry that says why."""
        if not self.cut_short:
            return self.answers
        error = p.MeshError(
            p.OVERLOADED, f"stopped gathering: {self.cut_short}; later answers were not read",
            request_id=request_id, details={"answers": len(self.answers), "bytes": self.bytes,
                                            "max_answers": self.max_answers,
                                            "max_bytes": MAX_ANSWER_BYTES})
        return [*self.answers, {"agent": "", "instance": "", "status": "error",
                                "error": error.to_dict()}]

    def counted(self, counting: asyncio.Future[int | None]) -> None:
        if counting.cancelled() or counting.exception() is not None:
            return
        self.expected = counting.result() or None  # zero listed: the catalog lags; wait
        self._check()

    def _check(self) -> None:
        count = len(self.answers)
        if not self.done.done() and self.expected is not None and count >= self.expected:
            self.done.set_result(None)


async def broadcast(nc: Client, capability: str, payload: Any, within: float,
                    request_id: str | None = None, answerers: Count | None = None,
                    max_answers: int = MAX_ANSWERS) -> list[dict[str, Any]]:
    """One broadcast on a subscription of its own (Broadcaster.broadcast, for one-offs)."""
    broadcaster = Broadcaster(nc)
    try:
        return await broadcaster.broadcast(capability, payload, within, request_id, answerers,
                                           max_answers)
    finally:
        await broadcaster.close()


def answer(msg: Msg) -> dict[str, Any]:
    """One answer as the broadcast's result lists it; a malformed one is an error answer."""
    headers = msg.headers or {}
    agent = cut(str(headers.get(p.HDR_SOURCE, "")), _SHORT)
    found: dict[str, Any] = {"agent": agent,
                             "instance": cut(str(headers.get(p.HDR_INSTANCE_ID, "")), _SHORT)}
    if headers.get(p.HDR_STATUS) == "error":
        error = p.MeshError.from_body(msg.data, agent=agent)
        return {**found, "status": "error", "error": error.to_dict()}
    try:
        result = orjson.loads(msg.data) if msg.data else {}
    except orjson.JSONDecodeError:
        error = p.MeshError(p.INVALID_OUTPUT, "the answer is not JSON", agent=agent)
        return {**found, "status": "error", "error": error.to_dict()}
    return {**found, "status": "ok", "result": result}


def answerers_in(entries: list[dict[str, Any]], capability: str) -> int:
    """How many answers a broadcast can get: one per process serving an agent offering it."""
    total = 0
    for entry in entries:  # anyone may write the catalog: trust no field's type
        offered, instances = entry.get("capabilities"), entry.get(INSTANCES)
        if isinstance(offered, list) and capability in offered and isinstance(instances, list):
            total += len(instances)
    return total

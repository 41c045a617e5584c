"""Scatter-gather: ask every agent offering a capability, gather their answers.

One publish on `mesh.broadcast.<c>` (no queue group, so every subscriber gets it) with a
reply inbox; answers are gathered until `within` has passed or every live answerer has
answered. How many are live comes from the catalog: the `x-instances` of each entry that
offers the capability, read while the answers arrive, so waiting for it costs nothing.
Without a catalog (no JetStream), the broadcast waits out `within`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from runtime.core import protocol as p
from runtime.nats.caller import budget_header

MAX_ANSWERS = 10_000  # anyone on the bus may answer: bound what one broadcast holds
INSTANCES = "x-instances"  # the catalog key listing the processes serving an entry
Count = Callable[[], Awaitable[int | None]]
_COUNTED = object()  # queued when the count of answerers is known


async def broadcast(nc: Client, capability: str, payload: Any, within: float,
                    request_id: str | None = None, answerers: Count | None = None,
                    ) -> list[dict[str, Any]]:
    """Every answer, in arrival order, as {agent, instance, status, result | error}."""
    request_id = request_id or uuid.uuid4().hex
    deadline = asyncio.get_running_loop().time() + within
    queue: asyncio.Queue[Any] = asyncio.Queue()
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=queue.put)
    counting: asyncio.Future[int | None] | None = None
    try:
        await nc.publish(p.broadcast_subject(capability), orjson.dumps(payload), reply=inbox,
                         headers={p.HDR_REQUEST_ID: request_id,
                                  p.HDR_TIMEOUT: budget_header(within)})
        if answerers is not None:
            counting = asyncio.ensure_future(answerers())
            counting.add_done_callback(lambda _: queue.put_nowait(_COUNTED))
        answers: list[dict[str, Any]] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):  # one timer for the whole gathering
                await _gather(queue, answers, counting)
        return answers
    finally:
        if counting is not None and not counting.done():
            counting.cancel()
        with contextlib.suppress(Exception):  # the connection may already be gone
            await sub.unsubscribe()


async def _gather(queue: asyncio.Queue[Any], answers: list[dict[str, Any]],
                  counting: asyncio.Future[int | None] | None) -> None:
    """Append answers until every expected one is in (or MAX_ANSWERS, or no responders)."""
    expected: int | None = None
    while len(answers) < MAX_ANSWERS and (expected is None or len(answers) < expected):
        item = await queue.get()
        if item is _COUNTED:
            expected = _count(counting)
            continue
        headers = item.headers or {}
        if headers.get("Status") == "503" and not item.data:
            return  # no responders: nobody subscribes to this capability
        answers.append(answer(item))


def answer(msg: Msg) -> dict[str, Any]:
    """One answer as the broadcast's result lists it; a malformed one is an error answer."""
    headers = msg.headers or {}
    agent = str(headers.get(p.HDR_SOURCE, ""))
    found: dict[str, Any] = {"agent": agent, "instance": str(headers.get(p.HDR_INSTANCE_ID, ""))}
    if headers.get(p.HDR_STATUS) == "error":
        error = p.MeshError.from_body(msg.data, agent=agent)
        return {**found, "status": "error", "error": error.to_dict()}
    try:
        result = orjson.loads(msg.data) if msg.data else {}
    except orjson.JSONDecodeError:
        error = p.MeshError(p.INVALID_OUTPUT, "the answer is not JSON", agent=agent)
        return {**found, "status": "error", "error": error.to_dict()}
    return {**found, "status": "ok", "result": result}


def _count(counting: asyncio.Future[int | None] | None) -> int | None:
    if counting is None or counting.cancelled() or counting.exception() is not None:
        return None
    found = counting.result()
    return found or None  # zero listed while someone subscribes: the catalog lags; wait


def answerers_in(entries: list[dict[str, Any]], capability: str) -> int:
    """How many answers a broadcast can get: one per process serving an agent offering it."""
    total = 0
    for entry in entries:  # anyone may write the catalog: trust no field's type
        offered, instances = entry.get("capabilities"), entry.get(INSTANCES)
        if isinstance(offered, list) and capability in offered and isinstance(instances, list):
            total += len(instances)
    return total

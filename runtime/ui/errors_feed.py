"""Recent errors: every error reply is also published on `mesh.errors.<name>`; the page
keeps the last few hundred it heard, with their trace ids. Anyone on the bus may publish
there, so every field is checked, cut and kept as text."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections import deque
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from runtime.core import protocol as p
from runtime.ui.topics import Topic

KEEP = 300  # errors remembered
MESSAGE_LIMIT = 1000  # characters of a message shown
DETAILS_LIMIT = 4000  # characters of the details' JSON shown
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class ErrorsFeed:
    """Subscribes to `mesh.errors.>`; `recent` is newest last."""

    def __init__(self, keep: int = KEEP):
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self.topic = Topic()
        self._sub: Any = None

    async def start(self, nc: Client) -> None:
        # A flood is dropped by the client's own slow-consumer limit, never queued forever.
        self._sub = await nc.subscribe(p.ERROR_SUBJECT_PREFIX + ">", cb=self._on,
                                       pending_msgs_limit=10_000)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):  # the connection is already closed
                await self._sub.unsubscribe()

    async def _on(self, msg: Msg) -> None:
        error = parse_error(msg.subject, msg.data, msg.headers or {})
        self.recent.append(error)
        # not "error": a browser's EventSource keeps that name for its own connection errors
        self.topic.publish({"event": "mesh_error", "data": error})


def parse_error(subject: str, data: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """An error as the page shows it: `{at, agent, code, message, request_id, trace_id,
    details}`, all text, whatever the message held."""
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        body = {"message": data[:MESSAGE_LIMIT].decode("utf-8", "replace")}
    body = body if isinstance(body, dict) else {"message": json.dumps(body)[:MESSAGE_LIMIT]}
    details = body.get("details")
    details_text = "" if details in (None, {}) else json.dumps(details, default=str)
    return {
        "at": time.time(),
        "agent": _text(body.get("agent")) or subject[len(p.ERROR_SUBJECT_PREFIX):],
        "code": _text(body.get("code")) or "?",
        "message": _text(body.get("message"))[:MESSAGE_LIMIT],
        "request_id": _text(body.get("request_id") or headers.get(p.HDR_REQUEST_ID))[:100],
        "trace_id": trace_id(headers, body),
        "details": details_text[:DETAILS_LIMIT],
    }


def trace_id(headers: dict[str, str], body: dict[str, Any]) -> str:
    """The W3C trace id of `traceparent`, else a body's `trace_id`, else ''."""
    match = _TRACEPARENT.match(str(headers.get("traceparent", "")).strip().lower())
    if match:
        return match.group(1)
    given = str(body.get("trace_id") or "").lower()
    return given if _TRACE_ID.match(given) else ""


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)[:200]

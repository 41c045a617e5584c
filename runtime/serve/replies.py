"""What a service sends, made so that the NATS server never refuses it.

The server answers a message bigger than its `max_payload` (headers included) with
`-ERR`, and nats-py then closes the connection for good. So every reply, chunk and
error is measured first: the common case costs one length comparison against a
headroom worked out once per service; only a body near the limit is measured exactly.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from runtime.core import protocol as p
from runtime.core.caps import AGENT_LIMIT, ID_LIMIT, capped_code, capped_details
from runtime.core.text import REQUEST_ID_MAX, cut, shown
from runtime.nats.guard import header_size

log = logging.getLogger("mesh-runtime")

MESSAGE_LIMIT = 1000  # characters of an error message
ENTRY_LIMIT = 200  # characters of each path or message in details
ERRORS_LIMIT = 20  # validation errors listed in details.errors
DROP_LOG_SECONDS = 10.0  # at most one log line this often about dropped requests
# ADR-32 asks for a number in Nats-Service-Error-Code; HTTP's meanings fit our codes.
SERVICE_ERROR_CODES = {p.INVALID_INPUT: 400, p.INVOCATION_MISMATCH: 400, p.NOT_FOUND: 404,
                       p.EXPIRED: 408, p.OVERLOADED: 429, p.TIMEOUT: 504}
_HEADER_MAX = 1024  # the error text in a header is cut here


def service_error_headers(error: p.MeshError) -> dict[str, str]:
    """Nats-Service-Error and Nats-Service-Error-Code (ADR-32) for an error reply."""
    text = " ".join(error.message.split())[:_HEADER_MAX]  # a header is one line
    return {p.HDR_SERVICE_ERROR: text or error.code,
            p.HDR_SERVICE_ERROR_CODE: str(SERVICE_ERROR_CODES.get(error.code, 500))}


def headroom(name: str) -> int:
    """The most header bytes any message of the service `name` carries."""
    return header_size({
        p.HDR_STATUS: "error", p.HDR_REQUEST_ID: "x" * REQUEST_ID_MAX, p.HDR_SOURCE: name,
        p.HDR_STREAM_SEQ: "9" * 20, p.HDR_STREAM_END: "false", p.HDR_INSTANCE_ID: "x" * 64,
    })


def too_big(body: bytes, headers: dict[str, str], max_payload: int) -> p.MeshError:
    """The `invalid_output` error for a result the server would refuse."""
    size = len(body) + header_size(headers)
    return p.MeshError(
        p.INVALID_OUTPUT, f"the output is {size} bytes with headers, over the NATS server's "
        f"max_payload of {max_payload} bytes", details={"size": size, "max_payload": max_payload})


def error_body(error: p.MeshError, room: int) -> bytes:
    """`error` as JSON of at most `room` bytes: every field cut (an error passed through
    from another agent may be huge), at most 20 validation errors listed."""
    data: dict[str, Any] = {
        "code": capped_code(error.code), "message": cut(error.message, MESSAGE_LIMIT),
        "agent": cut(error.agent, AGENT_LIMIT), "request_id": error.request_id[:ID_LIMIT],
        "details": capped_details(error.details, ENTRY_LIMIT, ERRORS_LIMIT, ERRORS_LIMIT)}
    body = _dumps(data)
    if len(body) <= room:
        return body
    # A server with a tiny max_payload: keep the code and as much message as fits.
    data["details"] = {}
    data["message"] = ""
    bare = len(_dumps(data))
    data["message"] = cut(error.message, max(0, (room - bare) // 8 - 40))
    body = _dumps(data)
    if len(body) > room:
        data["message"] = data["agent"] = ""
        body = _dumps(data)
    return body


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, default=repr).encode()  # details a handler made may hold anything

class DroppedRequests:
    """Requests refused without an answer (a reply subject starting with `$`), counted and
    logged at most once per DROP_LOG_SECONDS, so a flood cannot flood the log too."""

    def __init__(self) -> None:
        self.count = 0
        self._logged_at = -DROP_LOG_SECONDS
        self._logged_count = 0

    def note(self, agent: str, reply: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._logged_at < DROP_LOG_SECONDS:
            return
        since = self.count - self._logged_count
        self._logged_at, self._logged_count = now, self.count
        log.warning("dropped %d request(s) whose reply subject starts with '$' (a JetStream, KV "
                    "or system subject, never answered); latest: %s, reply %s; %d in all",
                    since, shown(agent), shown(reply, 100), self.count)


DROPPED = DroppedRequests()  # one count per process, whichever service saw the request

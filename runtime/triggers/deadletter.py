"""Dead letters: a stream message that will not be tried again goes, with its error, to
`mesh.dead.<name>`; the `MESH_DEAD` stream (made when missing) keeps it, so nothing is lost
silently. The body is the message's own bytes, so it can be sent again as it is."""

from __future__ import annotations

import json
import logging
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.js.errors import BadRequestError, NoStreamResponseError

from runtime.core import protocol as p
from runtime.core.text import cut

DEAD_PREFIX = "mesh.dead."
DEAD_STREAM = "MESH_DEAD"
KEEP_SECONDS = 7 * 24 * 3600
KEEP_BYTES = 256 * 1024 * 1024
MAX_KEPT_HEADERS = 32
HDR_DEAD_CODE = "X-Mesh-Dead-Code"
HDR_DEAD_ERROR = "X-Mesh-Dead-Error"  # the error body as JSON, capped

log = logging.getLogger("mesh-runtime")


def dead_subject(target: str) -> str:
    return DEAD_PREFIX + target


async def ensure_dead_stream(nc: Client) -> None:
    """The stream that keeps dead letters, unless one exists (or another stream takes
    mesh.dead.>: then that one keeps them)."""
    js = nc.jetstream(timeout=5)
    try:
        await js.stream_info(DEAD_STREAM)
        return
    except Exception:
        pass
    try:
        await js.add_stream(name=DEAD_STREAM, subjects=[DEAD_PREFIX + ">"],
                            max_age=KEEP_SECONDS, max_bytes=KEEP_BYTES)
    except BadRequestError as exc:  # subjects overlap a user's stream: it keeps them
        log.debug("dead letters: %s", exc)


def dead_headers(original: dict[str, str], error: p.MeshError,
                 where: dict[str, Any]) -> dict[str, str]:
    """The original headers (the server's own Nats-* ones left out) and what went wrong."""
    headers = {k: v for k, v in list(original.items())[:MAX_KEPT_HEADERS]
               if not k.lower().startswith("nats-")}
    body = {"code": error.code, "message": cut(error.message, 500), "agent": error.agent,
            "request_id": error.request_id, **where}
    details = json.dumps(error.details, ensure_ascii=True, default=str)
    if len(details) <= 1000:  # a step_failed's {step, code, message}; a long one is left out
        body["details"] = error.details
    headers[HDR_DEAD_CODE] = error.code[:64]
    headers[HDR_DEAD_ERROR] = json.dumps(body, ensure_ascii=True)  # no raw newline reaches a header
    return headers


async def dead_letter(nc: Client, target: str, data: bytes, headers: dict[str, str]) -> None:
    """Publish one dead letter, stored by JetStream when a stream takes it; raises when it
    could not be sent (the caller then keeps the message for another try)."""
    size = len(data) + 12 + sum(len(k) + len(v.encode()) + 4 for k, v in headers.items())
    if size > nc.max_payload:
        data = data[: max(0, len(data) - (size - nc.max_payload) - 64)]
        headers["X-Mesh-Dead-Truncated"] = "true"
    subject = dead_subject(target)
    try:
        await nc.jetstream(timeout=5).publish(subject, data, headers=headers)
    except (NoStreamResponseError, NoRespondersError):  # no stream keeps it: still said once
        await nc.publish(subject, data, headers=headers)

"""A trigger's message: what `with:` reads, the request's input, and ids derived from the
message's coordinates (stream sequence, KV revision, schedule tick), so that the same
message always makes the same run key and duplicates collapse."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from runtime.core import protocol as p
from runtime.core.text import REQUEST_ID_MAX
from runtime.load.triggercheck import TriggerDef
from runtime.pipeline.expressions import EvaluationError

HDR_RUN_KEY = p.HDR_RUN_KEY  # a run key: at most one run per key (durable pipelines)
MAX_HEADERS = 64  # a hostile message's headers that `with:` may read: bounded
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(slots=True)
class TriggerMessage:
    """One message a trigger received, whatever its kind."""

    subject: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)
    key: str | None = None  # a KV trigger's key
    value: Any = None  # the data `with:` reads when the body is not it (a schedule's tick)


def request_body(trigger: TriggerDef, message: TriggerMessage) -> bytes:
    """The request's body: the message's own bytes, or `with:` over the message. Raises
    MeshError(invalid_input) for a body that `with:` cannot read."""
    if trigger.with_ is None:
        return message.data  # the target decodes and checks it, as for any request
    try:
        data = message.value if message.value is not None else (
            orjson.loads(message.data) if message.data.strip() else {})
    except orjson.JSONDecodeError as exc:
        raise p.MeshError(p.INVALID_INPUT, f"the message body is not JSON: {exc}") from None
    headers = dict(list(message.headers.items())[:MAX_HEADERS])
    scope = {"message": {"data": data, "subject": message.subject, "headers": headers,
                         "key": message.key}}
    try:
        return orjson.dumps(trigger.with_.render(scope))
    except EvaluationError as exc:
        raise p.MeshError(p.INVALID_INPUT, f"with: {exc}") from None
    except TypeError as exc:
        raise p.MeshError(p.INVALID_INPUT, f"with: gave no JSON value: {exc}") from None


def coordinate_id(*parts: object) -> str:
    """A request id (and run key) from a message's coordinates: [A-Za-z0-9_-], at most 128
    characters (a long one keeps its start and ends in a hash of the whole)."""
    text = "-".join(_UNSAFE.sub("_", str(part)) for part in parts)
    if len(text) <= REQUEST_ID_MAX:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    return f"{text[:103]}-{digest}"

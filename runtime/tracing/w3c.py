"""W3C Trace Context in NATS headers: read and write `traceparent` and `tracestate`.

Everything here reads text from the wire: a value that is not exactly what the
W3C Trace Context spec allows is treated as absent (a new trace starts), never
as an error, and nothing here can raise on any input.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import NamedTuple

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
MAX_TRACESTATE = 512  # characters; W3C asks to pass on at least 512: longer ones are dropped
MAX_TRACESTATE_MEMBERS = 32  # list members, as the spec allows

# version-traceid-parentid-flags, lower-case hex only; a future version may append fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?",
                          re.DOTALL)
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# A tracestate member: key=value, printable ASCII without ',' and '=' in the value.
_MEMBER = re.compile(r"[a-z0-9][_0-9a-z\-*/@]{0,255}="
                     r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")

_bits = random.getrandbits  # not for secrets: ids need only be unique, and this is cheap


class SpanRef(NamedTuple):
    """A place in a trace: a trace id, a span id in it, and whether it is sampled."""

    trace_id: str  # 32 lower-case hex digits, not all zero
    span_id: str  # 16 lower-case hex digits, not all zero
    sampled: bool

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def new_trace_id() -> str:
    """32 hex digits of random bits (never all zero)."""
    return f"{_bits(128) or 1:032x}"


def new_span_id() -> str:
    """16 hex digits of random bits (never all zero)."""
    return f"{_bits(64) or 1:016x}"


def parse_traceparent(value: object) -> SpanRef | None:
    """The caller's place in its trace, or None for a missing or malformed header."""
    if not isinstance(value, str) or len(value) < 55 or len(value) > 1024:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None  # ff is forbidden; version 00 has exactly four fields
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return SpanRef(trace_id, span_id, int(flags, 16) & 1 == 1)


def clean_tracestate(value: object) -> str | None:
    """The caller's `tracestate` to pass on, or None when it is missing, oversized
    (over 512 characters or 32 members) or malformed: such a one is dropped whole."""
    if not isinstance(value, str) or not value or len(value) > MAX_TRACESTATE:
        return None
    members = [m.strip() for m in value.split(",")]
    members = [m for m in members if m]
    if not members or len(members) > MAX_TRACESTATE_MEMBERS:
        return None
    if not all(_MEMBER.fullmatch(m) for m in members):
        return None
    return ",".join(members)


def trace_id_in(headers: Mapping[str, str] | None) -> str | None:
    """The trace id a message's headers carry, if they carry a valid one."""
    ref = parse_traceparent(headers.get(TRACEPARENT)) if headers else None
    return ref.trace_id if ref is not None else None

"""OTLP protobuf for a batch of spans: the mesh's own written here, the rest by the SDK.

The SDK's encoder walks each span through layers of Python helpers and protobuf message
objects (about 20 µs a span on a busy 2-core machine, as much as making the span). The
mesh's spans have string attributes, no events and no links, so their bytes are written
directly in the protobuf wire format (a few µs), as runtime/nats/headerblock.py writes
NATS header blocks. Serialized messages concatenate, so one request holds both.
tests/test_tracing_spans.py checks the bytes against the SDK's encoder, field by field.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan

from runtime.tracing.spans import SCOPE

_Q = struct.Struct("<Q").pack  # fixed64
_I = struct.Struct("<I").pack  # fixed32
_FLAGS_LOCAL = b"\x85\x01" + _I(0x100)  # Span.flags (16): the parent's remoteness is known
_FLAGS_REMOTE = b"\x85\x01" + _I(0x300)  # ... and the parent is remote


_SMALL = [bytes([n]) for n in range(128)]  # most lengths need one byte


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field: its tag byte(s), the length, the bytes."""
    size = len(data)
    return tag + (_SMALL[size] if size < 128 else _varint(size)) + data


@lru_cache(maxsize=256)
def _key(key: str) -> bytes:
    return _field(b"\x0a", key.encode())  # KeyValue.key (1)


def _value(value: Any) -> bytes:
    """An AnyValue: string (1), bool (2), int (3) or double (4)."""
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)
    return _field(b"\x0a", str(value).encode())


def _attributes(tag: bytes, attributes: Any) -> bytes:
    """Repeated KeyValue under `tag` (Span.attributes is 9, Resource.attributes 1)."""
    parts = []
    for key, value in (attributes or {}).items():
        encoded = value.encode() if type(value) is str else None
        if encoded is not None and len(encoded) < 126:  # the mesh's: a short string
            size = len(encoded)
            pair = _key(key) + b"\x12" + _SMALL[size + 2] + b"\x0a" + _SMALL[size] + encoded
        else:
            pair = _key(key) + _field(b"\x12", _value(value))
        parts.append(_field(tag, pair))
    return b"".join(parts)


def _span(span: ReadableSpan) -> bytes:
    context, parent, status = span.context, span.parent, span.status
    assert context is not None
    parts = [b"\x0a\x10", context.trace_id.to_bytes(16, "big"),
             b"\x12\x08", context.span_id.to_bytes(8, "big")]
    if parent is not None:
        parts += [b"\x22\x08", parent.span_id.to_bytes(8, "big")]
    parts += [_field(b"\x2a", span.name.encode()),
              b"\x30", _varint(span.kind.value + 1),  # OTLP counts from UNSPECIFIED
              b"\x39", _Q(span.start_time or 0), b"\x41", _Q(span.end_time or 0),
              _attributes(b"\x4a", span.attributes)]
    code = status.status_code.value
    if code:
        message = _field(b"\x12", status.description.encode()) if status.description else b""
        parts.append(_field(b"\x7a", message + b"\x18" + _varint(code)))  # Span.status (15)
    parts.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    return b"".join(parts)


def encode(spans: Sequence[ReadableSpan]) -> bytes:
    """One serialized ExportTraceServiceRequest."""
    others = [s for s in spans if s.instrumentation_scope is not SCOPE]
    head = encode_spans(others).SerializePartialToString() if others else b""
    by_resource: dict[int, list[bytes]] = {}
    resources = {}
    for span in spans:
        if span.instrumentation_scope is SCOPE:
            by_resource.setdefault(id(span.resource), []).append(_field(b"\x12", _span(span)))
            resources[id(span.resource)] = span.resource
    tail = []
    scope = _field(b"\x0a", _field(b"\x0a", SCOPE.name.encode()))  # ScopeSpans.scope.name
    for key, encoded in by_resource.items():
        resource = _field(b"\x0a", _attributes(b"\x0a", resources[key].attributes))
        scope_spans = _field(b"\x12", scope + b"".join(encoded))
        tail.append(_field(b"\x0a", resource + scope_spans))  # request.resource_spans (1)
    return head + b"".join(tail)

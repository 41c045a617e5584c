"""OTLP protobuf for a batch of the mesh's spans, written in the wire format directly.

The SDK's encoder walks each span through layers of Python helpers and protobuf message
objects (about 20 µs a span on a busy 2-core machine, as much as serving an echo). The
mesh's spans have string attributes, no events and no links, so their bytes are written
directly (a few µs), as runtime/nats/headerblock.py writes NATS header blocks.
tests/test_tracing_spans.py checks the bytes against the SDK's encoder, field by field.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from runtime.tracing.spans import SCOPE, Record

_Q = struct.Struct("<Q").pack  # fixed64
_FLAGS_LOCAL = b"\x85\x01" + struct.pack("<I", 0x100)  # Span.flags (16): parent is local
_FLAGS_REMOTE = b"\x85\x01" + struct.pack("<I", 0x300)  # ... parent is remote
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


# Attributes that take few values (all but a request id), encoded once; used by the one
# sending thread only.
_PAIRS: dict[tuple[bytes, str, Any], bytes] = {}
_VARIED = frozenset({"mesh.request_id"})


def attributes(tag: bytes, found: Mapping[str, Any] | None) -> bytes:
    """Repeated KeyValue under `tag` (Span.attributes is 9, Resource.attributes 1)."""
    parts = []
    for key, value in (found or {}).items():
        known = _PAIRS.get((tag, key, value)) if key not in _VARIED else None
        if known is not None:
            parts.append(known)
            continue
        encoded = value.encode() if type(value) is str else None
        if encoded is not None and len(encoded) < 126:  # the mesh's: a short string
            size = len(encoded)
            pair = _key(key) + b"\x12" + _SMALL[size + 2] + b"\x0a" + _SMALL[size] + encoded
        else:
            pair = _key(key) + _field(b"\x12", _value(value))
        field = _field(tag, pair)
        if key not in _VARIED and len(_PAIRS) < 4096 and type(value) is str:
            _PAIRS[(tag, key, value)] = field
        parts.append(field)
    return b"".join(parts)


def _span(record: Record) -> bytes:
    name, kind, trace_id, span_id, parent, remote, start, end, found, error = record
    parts = [b"\x0a\x10", trace_id.to_bytes(16, "big"), b"\x12\x08", span_id.to_bytes(8, "big")]
    if parent:
        parts += [b"\x22\x08", parent.to_bytes(8, "big")]
    parts += [_field(b"\x2a", name.encode()),
              b"\x30", _SMALL[kind + 1],  # OTLP counts from UNSPECIFIED
              b"\x39", _Q(start), b"\x41", _Q(end), attributes(b"\x4a", found)]
    if error:  # Span.status (15): message (2), code (3) ERROR
        parts.append(_field(b"\x7a", _field(b"\x12", error.encode()) + b"\x18\x02"))
    parts.append(_FLAGS_REMOTE if parent and remote else _FLAGS_LOCAL)
    return _field(b"\x12", b"".join(parts))  # ScopeSpans.spans (2)


def resource_block(found: Mapping[str, Any]) -> bytes:
    """ResourceSpans.resource (1), written once per process."""
    return _field(b"\x0a", attributes(b"\x0a", found))


def encode(records: Sequence[Record], resource: bytes) -> bytes:
    """One serialized ExportTraceServiceRequest: one resource, the mesh's scope."""
    scope = _field(b"\x0a", _field(b"\x0a", SCOPE.name.encode()))  # ScopeSpans.scope.name
    scope_spans = _field(b"\x12", scope + b"".join(_span(r) for r in records))
    return _field(b"\x0a", resource + scope_spans)  # request.resource_spans (1)

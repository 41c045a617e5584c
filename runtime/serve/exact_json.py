"""JSON in and out of a service, exactly: no number silently changed, no nesting that breaks.

orjson is fast but turns an integer past 64 bits into a float when it reads one, and
refuses to write one. A body that may hold such an integer (a long run of digits) is read
with the standard library instead, which keeps it exact; a result holding one is written
the same way. orjson writes at most 254 levels of nesting, so a payload nested deeper is
refused on arrival: whatever is accepted can be echoed, forwarded and answered.
Both checks cost one length comparison for a small body, C-speed scans for a larger one.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

MAX_DEPTH = 254  # the deepest nesting orjson writes
# What orjson reads as a float although it is an integer: past 2**64 - 1 (20 digits) or
# below -2**63 (19 digits and a sign). Shorter runs are always read exactly. A run of 19
# digits is looked for at C speed first (digits mapped to one byte, then `find`): a regex
# scan costs ~25 ns per byte, which would double the cost of a 1 KB request.
_LONG_NUMBER = re.compile(rb"-[0-9]{19}|[0-9]{20}")
_DIGIT_MAP = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_RUN = b"0" * 19
_BIG_INT = "Integer exceeds 64-bit range"


class PayloadError(ValueError):
    """The body is not JSON, or not JSON the mesh can carry (the message says which)."""


def loads(data: bytes) -> Any:
    """The JSON value of `data`, numbers exact; raises PayloadError."""
    if len(data) >= 19 and _RUN in data.translate(_DIGIT_MAP) and _LONG_NUMBER.search(data):
        value = _loads_exact(data)
    else:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            if str(exc).startswith("depth limit exceeded"):
                raise PayloadError(f"nested more than {MAX_DEPTH} levels deep") from None
            raise PayloadError(f"not JSON: {exc}") from None
    # Every level takes two bytes ('[' and ']'): only a longer body can be too deep.
    if len(data) > 2 * MAX_DEPTH and data.count(b"[") + data.count(b"{") > MAX_DEPTH:
        try:
            dumps(value)
        except TypeError:
            raise PayloadError(f"nested more than {MAX_DEPTH} levels deep") from None
    return value


def _loads_exact(data: bytes) -> Any:
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise PayloadError(f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # not JSON, or an integer of more than 4300 digits
        raise PayloadError(f"not JSON: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def dumps(value: Any) -> bytes:
    """`value` as JSON; an integer past 64 bits is written exactly. Raises TypeError."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        if str(exc) != _BIG_INT:
            raise
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()
    except (ValueError, RecursionError) as exc:
        raise TypeError(str(exc)) from None

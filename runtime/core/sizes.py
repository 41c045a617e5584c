"""Byte sizes as people write them in mesh.yaml: `512MB`, `1GB`, `64KB`, or plain bytes."""

from __future__ import annotations

import re
from typing import Any

SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB)?\s*$"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB)?\s*$", re.IGNORECASE)
_UNIT_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def parse_size(value: Any) -> int:
    """Bytes from `64KB`, `512MB`, `1GB` (units of 1024) or a number; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}: use a number with a unit, like 512MB or 1GB")
    if isinstance(value, int | float):
        size = int(value)
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"invalid size {value!r}: use a number with a unit, like 512MB or 1GB")
        size = int(float(match.group(1)) * _UNIT_BYTES[(match.group(2) or "B").upper()])
    if size <= 0:
        raise ValueError(f"invalid size {value!r}: must be greater than zero")
    return size

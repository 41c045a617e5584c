"""Durations as people write them in mesh.yaml: `250ms`, `5s`, `2m`, `1h`, or plain seconds."""

from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*$"


def parse_duration(value: Any) -> float:
    """Seconds from `250ms`, `5s`, `2m`, `1h` or a number of seconds; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: use a number with a unit, like 250ms, 5s, 2m")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(
                f"invalid duration {value!r}: use a number with a unit, like 250ms, 5s, 2m"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"invalid duration {value!r}: must be greater than zero")
    return seconds

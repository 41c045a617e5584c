"""A catalog too big for one KV value: what fits stays in it, the rest is said once.

OpenAgentMesh keeps the whole catalog in one key, and NATS caps one message at the
server's `max_payload` (1 MB by default: about 5,000 small entries). Past that, every
name still serves and keeps its registry card, and `mesh-runtime ls` lists it from the
registry; only an OpenAgentMesh client's `catalog()` misses the names left out.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("mesh-runtime")
HEADROOM = 1024  # bytes kept free under max_payload for the message's own headers
_SHOWN = 5  # names quoted in the warning


def fit_catalog(entries: list[dict[str, Any]], max_payload: int) -> tuple[bytes, list[str]]:
    """The catalog's JSON within max_payload, and the names left out (in entry order)."""
    data = json.dumps(entries).encode()
    limit = max_payload - HEADROOM
    if len(data) <= limit:
        return data, []
    kept, size = [], 2  # the list's brackets
    left_out: list[str] = []
    for entry in sorted(entries, key=_name):
        piece = len(json.dumps(entry).encode()) + 2  # ", " between entries
        if size + piece <= limit and not left_out:
            kept.append(entry)
            size += piece
        else:
            left_out.append(_name(entry))
    return json.dumps(kept).encode(), left_out


def _name(entry: Any) -> str:
    """An entry's name for sorting and saying (another client's entry may be no object)."""
    return str(entry.get("name"))[:200] if isinstance(entry, dict) else f"<{type(entry).__name__}>"


class OverflowWarning:
    """Warns once per process that OpenAgentMesh clients miss part of the catalog."""

    def __init__(self) -> None:
        self.warned = False

    def check(self, left_out: list[str], listed: int, max_payload: int) -> None:
        if not left_out or self.warned:
            return
        self.warned = True
        shown = ", ".join(left_out[:_SHOWN])
        more = f" and {len(left_out) - _SHOWN} more" if len(left_out) > _SHOWN else ""
        log.warning(
            "the catalog outgrows one NATS message (max_payload %d bytes): it lists %d "
            "names, and OpenAgentMesh clients' catalog() will miss %d (%s%s). They are "
            "served, have registry cards, and `mesh-runtime ls` lists them",
            max_payload, listed, len(left_out), shown, more)

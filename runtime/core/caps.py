"""Bounds on what other processes tell us: an error passed through from another agent keeps
its meaning but not its size.

Anyone on the bus may answer a call (by joining an agent's queue group) with an error
whose every field is a megabyte long. A handler that re-raises it, a pipeline that
reports it, or a broadcast that lists it must not carry that on: each field is cut here,
when the error is read from the wire, and again when an error is written.
"""

from __future__ import annotations

from typing import Any

from runtime.core.text import cut

CODE_LIMIT = 64  # characters of an error code (ours are at most 19)
AGENT_LIMIT = 256  # characters of an agent name in an error
ID_LIMIT = 128  # characters of a request id (the wire's own rule)
MESSAGE_LIMIT = 4000  # characters of a message read from the wire (a reply cuts to 1,000)
ENTRY_LIMIT = 1000  # characters of each string inside details read from the wire
ITEMS_LIMIT = 50  # items of each list or object inside details read from the wire
DEPTH_LIMIT = 8  # levels of nesting inside details
NODES_LIMIT = 400  # values inside details, in all


def capped_code(code: str) -> str:
    return code[:CODE_LIMIT]


def capped_details(details: Any, entry: int = ENTRY_LIMIT, items: int = ITEMS_LIMIT,
                   errors: int = ITEMS_LIMIT) -> dict[str, Any]:
    """`details` with strings cut to `entry` characters, lists and objects to `items`
    (`errors`, the validation errors, to `errors`, with `error_count` saying how many there
    were), nesting to DEPTH_LIMIT and NODES_LIMIT values in all."""
    if not isinstance(details, dict):
        return {}
    budget = [NODES_LIMIT]
    capped: dict[str, Any] = {}
    for key, value in list(details.items())[:items]:
        key = cut(str(key), entry)
        if key == "errors" and isinstance(value, list):
            capped[key] = [_capped(e, entry, items, 1, budget) for e in value[:errors]]
            if len(value) > errors:
                capped["error_count"] = len(value)
        else:
            capped[key] = _capped(value, entry, items, 1, budget)
    return capped


def _capped(value: Any, entry: int, items: int, depth: int, budget: list[int]) -> Any:
    budget[0] -= 1
    if isinstance(value, str):
        return cut(value, entry)
    if not isinstance(value, (dict, list)):
        return value
    if depth >= DEPTH_LIMIT or budget[0] <= 0:
        return "..."  # deeper or more than an error's details need
    if isinstance(value, dict):
        return {cut(str(k), entry): _capped(v, entry, items, depth + 1, budget)
                for k, v in list(value.items())[:items]}
    return [_capped(v, entry, items, depth + 1, budget) for v in value[:items]]

"""Records other processes write are untrusted input: check each before reading it.

Any client on the bus may put anything into `mesh-catalog` and `mesh-instances`. A
catalog entry of the wrong type or size is skipped (never read, never a reason for an
exception that would stop an `up` from updating the catalog) and logged once; the work
done per entry is bounded by a cap on its size and on the instances it may list; and a
log line names at most 10 of them, then a count.

Twins (two `up`s serving one name with different definitions): each entry our runtime
writes says whose definition its content is, `x-definition: "<schema hash>@<instance>"`
(one short string: the catalog is one KV value, and every byte per entry counts). So an
`up` that starts can tell that the instance whose entry it finds serves the name
differently (a warning naming both), and when that instance stops, a live one sees that
the entry shows the gone and writes its own back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable
from typing import Any

from runtime.core.text import shown
from runtime.load.mesh import Endpoint

log = logging.getLogger("mesh-runtime")

INSTANCES = "x-instances"  # the `up` processes serving an entry (see catalog.py)
MAX_ENTRY_BYTES = 64 * 1024  # one catalog entry's JSON; ours are well under 4 KB
MAX_INSTANCES = 256  # instances one entry may name (each a worker of some `up`)
MAX_ID_CHARS = 64  # an instance id (ours: 12 hex digits) is a KV key and a log value
MAX_NAME_CHARS = 256
# An instance id becomes a KV key and a subject token: no dots, wildcards or spaces.
is_instance_id = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID_CHARS}}}").fullmatch
NAMES_SHOWN = 10  # names a log line lists before it says how many more
_REMEMBERED = 10_000  # problems already logged, kept to log each once


def entry_problem(entry: Any) -> str | None:
    """Why a catalog entry cannot be read (None when it can); cheapest checks first."""
    if not isinstance(entry, dict):
        return f"not an object but {type(entry).__name__}"
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        return "its name is not a string"
    if len(name) > MAX_NAME_CHARS:
        return f"its name is over {MAX_NAME_CHARS} characters"
    serving = entry.get(INSTANCES)
    if serving is not None:
        if not isinstance(serving, list):
            return f"{INSTANCES} is not a list but {type(serving).__name__}"
        if len(serving) > MAX_INSTANCES:
            return f"{INSTANCES} names {len(serving)} instances (at most {MAX_INSTANCES})"
        if not all(isinstance(i, str) and is_instance_id(i) for i in serving):
            return f"{INSTANCES} holds something else than instance ids"
    size = _size(entry)
    if size > MAX_ENTRY_BYTES:
        return f"it is {size} bytes (at most {MAX_ENTRY_BYTES})"
    return None


def is_oversized(entry: Any) -> bool:
    """An entry that would crowd the others out of the catalog key: not worth keeping."""
    if not isinstance(entry, dict):
        return False
    serving = entry.get(INSTANCES)
    if isinstance(serving, list) and len(serving) > MAX_INSTANCES:
        return True
    return _size(entry) > MAX_ENTRY_BYTES


def _size(entry: Any) -> int:
    try:
        return len(json.dumps(entry).encode())
    except (ValueError, RecursionError):  # nested past what Python writes: too big to keep
        return MAX_ENTRY_BYTES + 1


def split_entries(data: Any) -> tuple[list[dict[str, Any]], list[tuple[Any, str]]]:
    """(entries that can be read, [(skipped entry, why)]) from a catalog's parsed JSON."""
    if not isinstance(data, list):
        return [], []
    good: list[dict[str, Any]] = []
    bad: list[tuple[Any, str]] = []
    for entry in data:
        problem = entry_problem(entry)
        if problem is None:
            good.append(entry)
        else:
            bad.append((entry, problem))
    return good, bad


def label(entry: Any) -> str:
    """How a skipped entry is named in a log line: its name if it has a usable one."""
    if not isinstance(entry, dict):
        return f"<{type(entry).__name__}>"
    name = entry.get("name")
    return repr(shown(name, 60)) if isinstance(name, str) else f"<name: {type(name).__name__}>"


def listed(names: Iterable[str], limit: int = NAMES_SHOWN) -> str:
    """`a, b, c` with at most `limit` names, then `and N more`."""
    items = list(names)
    head = ", ".join(items[:limit])
    return f"{head} and {len(items) - limit} more" if len(items) > limit else head


class SkipLog:
    """Logs each skipped record once per process: a hostile record read every heartbeat
    must not become a line every heartbeat."""

    def __init__(self, what: str):
        self.what = what
        self._seen: set[tuple[str, str]] = set()

    def note(self, skipped: list[tuple[Any, str]]) -> None:
        fresh = []
        for entry, why in skipped:
            key = (label(entry), why)
            if key not in self._seen:
                if len(self._seen) >= _REMEMBERED:
                    self._seen.clear()
                self._seen.add(key)
                fresh.append(f"{key[0]} ({why})")
        if fresh:
            log.warning("skipped %d malformed %s written by another client: %s",
                        len(fresh), self.what, listed(fresh))


def number(value: Any) -> float | None:
    """A finite JSON number (not a bool, not a string), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


DEFINITION = "x-definition"


def schema_hash(endpoint: Endpoint) -> str:
    """What two definitions of one name must share to answer callers alike."""
    shape = {"input": endpoint.input.document if endpoint.input is not None else None,
             "output": endpoint.output.document if endpoint.output is not None else None,
             "streaming": endpoint.streaming}
    text = json.dumps(shape, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _written_by(entry: dict[str, Any] | None) -> tuple[str, str] | None:
    """(schema hash, instance) of the entry's content, if our runtime wrote it."""
    value = (entry or {}).get(DEFINITION)
    if not isinstance(value, str) or "@" not in value:
        return None
    schema, _, instance = value.partition("@")
    return schema, instance


def joined(existing: dict[str, Any] | None, ours: dict[str, Any], serving: list[str],
           instance: str, schema: str) -> tuple[dict[str, Any], list[str]]:
    """Our entry with us added to `serving`, and the instance still serving the name whose
    entry we replace, if its definition differs from ours (a twin)."""
    written = _written_by(existing)
    twins = []
    if written is not None and written[1] != instance and written[0] != schema and (
            written[1] in serving):
        twins.append(written[1])
    return {**ours, INSTANCES: serving, DEFINITION: f"{schema}@{instance}"}, twins


def without(entry: dict[str, Any], others: list[str]) -> dict[str, Any]:
    """The entry served only by `others` (the rest stopped or died)."""
    return {**entry, INSTANCES: others}


def shows_the_gone(entry: dict[str, Any]) -> bool:
    """Whether the entry's content is the definition of an instance no longer serving it
    (a twin that stopped): a live instance should write its own back."""
    written = _written_by(entry)
    serving = entry.get(INSTANCES)
    return written is not None and isinstance(serving, list) and written[1] not in serving

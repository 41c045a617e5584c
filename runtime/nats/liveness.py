"""Who is alive on the mesh: the instance records in KV `mesh-instances`.

Each `up` process puts `{"instance_id", "mesh", "host", "pid", "started", "generation",
"agents", "heartbeat", "interval_s"}` under its instance id every interval; a record
whose heartbeat is older than 3 of its own intervals belongs to a dead process.
Both the servers (to clean up after the dead) and the clients (`ls`, `status`) read it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from nats.js.kv import KeyValue

from runtime.core import protocol as p

MISSED_BEATS = 3  # heartbeats an instance may miss before it counts as dead
DEFAULT_INTERVAL = 5.0  # health.interval's default, for a record that does not say its own
Record = dict[str, Any]


def is_alive(record: Record | None, now: float | None = None) -> bool:
    """Whether the record's heartbeat is younger than 3 of its intervals."""
    if not record:
        return False
    try:
        heartbeat = float(record["heartbeat"])
        interval = float(record.get("interval_s") or DEFAULT_INTERVAL)
    except (KeyError, TypeError, ValueError):
        return False  # not a record we can read: nothing vouches for it
    return heartbeat >= (time.time() if now is None else now) - MISSED_BEATS * interval


def parse_record(value: bytes | None) -> Record | None:
    try:
        data = json.loads(value or b"")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def open_instances(js: Any) -> KeyValue | None:
    """The `mesh-instances` bucket, or None where no `up` ever made it."""
    try:
        kv: KeyValue = await js.key_value(p.INSTANCES_BUCKET)
    except Exception:
        return None
    return kv


async def mark_offline(js: Any, entries: list[dict[str, Any]]) -> None:
    """Set `offline: true` on catalog entries none of whose instances is alive.

    Entries without `x-instances` (written by OpenAgentMesh itself) say nothing of who
    serves them, so they are left as they are; so is everything without the bucket.
    """
    kv = await open_instances(js)
    if kv is None:
        return
    named = {i for e in entries for i in instances_of(e)}
    records = await read_records(kv, named) if named else {}
    now = time.time()
    for entry in entries:
        if isinstance(entry.get("x-instances"), list) and not any(
                is_alive(records.get(i), now) for i in instances_of(entry)):
            entry["offline"] = True


async def read_record(kv: KeyValue, instance_id: str) -> Record | None:
    try:
        entry = await kv.get(instance_id)
    except Exception:  # missing, deleted, or an id that is no valid key
        return None
    return parse_record(entry.value)


async def read_records(kv: KeyValue, ids: set[str]) -> dict[str, Record | None]:
    """The records of `ids` (None where missing), fetched side by side."""
    ordered = sorted(ids)
    found = await asyncio.gather(*(read_record(kv, i) for i in ordered))
    return dict(zip(ordered, found, strict=True))


async def all_records(kv: KeyValue) -> dict[str, Record]:
    """Every record in the bucket, live or dead, by instance id."""
    try:
        keys = await kv.keys()
    except Exception:  # nats-py raises when the bucket holds no keys
        return {}
    return {k: r for k, r in (await read_records(kv, set(keys))).items() if r is not None}


def instances_of(entry: dict[str, Any]) -> list[str]:
    value = entry.get("x-instances")
    return [str(i) for i in value] if isinstance(value, list) else []

"""Who is alive on the mesh: the instance records in KV `mesh-instances`.

Each `up` process puts `{"instance_id", "mesh", "host", "pid", "started", "generation",
"agents", "heartbeat", "interval_s"}` under its instance id every interval; a record
whose heartbeat is older than 3 of its own intervals belongs to a dead process.
Both the servers (to clean up after the dead) and the clients (`ls`, `status`) read it.

Any client may write a record, so what one may claim is capped: the heartbeat must be a
finite number, no later than the time the server stored it (a far-future beat buys
nothing), and the interval at most MAX_INTERVAL; so no record keeps a dead instance
alive past 3 of its (capped) intervals as the reader's clock sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import datetime
from typing import Any

from nats.js.kv import KeyValue

from runtime.core import protocol as p
from runtime.nats.records import is_instance_id, number

MISSED_BEATS = 3  # heartbeats an instance may miss before it counts as dead
DEFAULT_INTERVAL = 5.0  # health.interval's default, for a record that does not say its own
MAX_INTERVAL = 60.0  # the longest interval a record may claim (the loader's limit too)
MAX_RECORD_BYTES = 1024 * 1024  # a record bigger than one NATS message is nobody's
PUT_AT = "\x00put_at"  # set by the reader: when the server stored the record (never JSON's)
SKEW = 1.0  # seconds a writer's clock may run ahead of the server's
READ_LIMIT = 1_000  # records read from the bucket at once (the rest: the next pass)
READ_BYTES = 16 * 1024 * 1024  # ...and at most this much of them (ours: a few hundred bytes)
Record = dict[str, Any]


def interval_of(record: Record) -> float:
    """The record's interval, within (0, MAX_INTERVAL]."""
    claimed = number(record.get("interval_s"))
    return DEFAULT_INTERVAL if claimed is None or claimed <= 0 else min(claimed, MAX_INTERVAL)


def is_alive(record: Record | None, now: float | None = None) -> bool:
    """Whether the record's heartbeat is younger than 3 of its intervals."""
    if not record:
        return False
    heartbeat = number(record.get("heartbeat"))
    if heartbeat is None:
        return False  # not a record we can read: nothing vouches for it
    now = time.time() if now is None else now
    interval = interval_of(record)
    put_at = record.get(PUT_AT)
    ceiling = put_at + SKEW if isinstance(put_at, float) else now + MISSED_BEATS * interval
    if heartbeat > ceiling:  # a beat from the future: claims what nobody can vouch for
        return isinstance(put_at, float) and put_at >= now - MISSED_BEATS * interval
    return heartbeat >= now - MISSED_BEATS * interval


def parse_record(value: bytes | None, put_at: datetime | None = None) -> Record | None:
    if value is not None and len(value) > MAX_RECORD_BYTES:
        return None
    try:
        data = json.loads(value or b"")
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    data.pop(PUT_AT, None)
    if put_at is not None:
        with contextlib.suppress(ValueError, OverflowError, OSError):
            data[PUT_AT] = float(put_at.timestamp())
    return data


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


async def read_record(kv: KeyValue, instance_id: str, js: Any = None) -> Record | None:
    """One record; with `js` (a JetStream context), with the time the server stored it."""
    if not is_instance_id(instance_id):
        return None
    try:
        if js is None:
            entry = await kv.get(instance_id)
            return parse_record(entry.value)
        message = await js.get_msg(f"KV_{p.INSTANCES_BUCKET}",
                                   subject=f"$KV.{p.INSTANCES_BUCKET}.{instance_id}")
    except Exception:  # missing, deleted, or an id that is no valid key
        return None
    headers = message.headers or {}
    if headers.get("KV-Operation") in ("DEL", "PURGE"):
        return None
    return parse_record(message.data, message.time)


async def read_records(kv: KeyValue, ids: set[str], js: Any = None) -> dict[str, Record | None]:
    """The records of `ids` (None where missing), fetched side by side."""
    ordered = sorted(ids)
    found = await asyncio.gather(*(read_record(kv, i, js) for i in ordered))
    return dict(zip(ordered, found, strict=True))


async def all_records(kv: KeyValue, limit: int | None = None) -> dict[str, Record]:
    """Every record in the bucket (at most `limit`, and READ_BYTES), live or dead."""
    return (await read_bucket(kv, limit))[0]


async def read_bucket(kv: KeyValue, limit: int | None = None) -> tuple[dict[str, Record], bool]:
    """(the records in the bucket, oldest first, by instance id, each with the time the
    server stored it; whether that is all of them): one consumer, not a read each, and
    at most `limit` records and READ_BYTES bytes."""
    found: dict[str, Record] = {}
    try:
        watcher = await kv.watchall(ignore_deletes=True)
    except Exception:  # the bucket is gone, or the connection
        return found, True
    size, complete = 0, False
    try:
        while (limit is None or len(found) < limit) and size < READ_BYTES:
            entry = await watcher.updates(timeout=5)
            if entry is None:
                complete = True  # every stored record delivered
                break
            size += len(entry.value or b"")
            # unreadable: an empty record, which nothing vouches for (so it is reaped)
            found[entry.key] = parse_record(entry.value, entry.created) or {}
    except Exception:  # a stalled read: what was read is what there is
        pass
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()
    return found, complete


def instances_of(entry: dict[str, Any]) -> list[str]:
    """The instance ids an entry names (entries are checked by records.split_entries)."""
    value = entry.get("x-instances")
    return [i for i in value if isinstance(i, str)] if isinstance(value, list) else []

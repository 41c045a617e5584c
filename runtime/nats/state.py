"""The shared state: the `mesh-context` KV bucket OpenAgentMesh clients open, values as JSON.

`update` is a compare-and-set loop: read the value and its revision, compute the new
value, write it only if nobody wrote in between, else read again. So many concurrent
updates of one key lose nothing, across processes too. Writes carry the `traceparent` of
the request they are made for (stored with the value); reads are JetStream API requests.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from typing import Any

import orjson
from nats.aio.client import Client
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from runtime.core import protocol as p
from runtime.core.bus import Updater, state_key_problem
from runtime.nats.guard import KV_HEADER_ROOM, check_fits
from runtime.tracing import TRACEPARENT, outgoing

UPDATE_ATTEMPTS = 200  # conflicts under heavy contention; each retry waits a little longer
# What nats-py's KeyValue writes with, and the codes of "someone wrote since" (JetStream API).
KV_OPERATION = "KV-Operation"
LAST_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
WRONG_LAST_SEQUENCE = (10071, 10164)
TRACE_ROOM = 72  # `traceparent: 00-<32>-<16>-01` (a write carries no tracestate)


class KvState:
    """`get`, `put`, `delete`, `update(key, fn)` and `keys` over one NATS connection."""

    def __init__(self, nc: Client):
        self.nc = nc
        self._bucket: KeyValue | None = None
        self._opening = asyncio.Lock()

    async def get(self, key: str) -> Any:
        """The value, or None when the key is missing."""
        kv = await self._kv(key)
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:  # deleted keys included
            return None
        return decode(entry.value)

    async def put(self, key: str, value: Any) -> None:
        await self._kv(key)
        await self._write(key, self._encoded(key, value))

    async def delete(self, key: str) -> None:
        await self._kv(key)
        await self._write(key, b"", {KV_OPERATION: "DEL"})

    async def update(self, key: str, fn: Updater) -> Any:
        """Set `key` to `fn(current value or None)` atomically; returns the value written."""
        kv = await self._kv(key)
        for attempt in range(UPDATE_ATTEMPTS):
            try:
                entry = await kv.get(key)
                current, revision = decode(entry.value), entry.revision
            except KeyNotFoundError as missing:  # a deleted key: after its delete marker
                gone = getattr(missing, "entry", None)
                current, revision = None, gone.revision if gone is not None else 0
            new = fn(current)
            if inspect.isawaitable(new):
                new = await new
            data = self._encoded(key, new)
            try:  # only if nobody wrote since (0: only if the key has never been written)
                await self._write(key, data, {LAST_SEQUENCE: str(revision or 0)})
                return new
            except KeyWrongLastSequenceError:
                await asyncio.sleep(random.uniform(0, 0.001) * min(attempt + 1, 20))
        raise p.MeshError(p.HANDLER_ERROR, f"state key '{key}' kept changing: gave up after "
                          f"{UPDATE_ATTEMPTS} tries")

    async def keys(self) -> list[str]:
        kv = await self._kv(None)
        try:
            return sorted(await kv.keys())
        except NoKeysError:
            return []

    async def _write(self, key: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        """A write of the bucket, as nats-py's KeyValue makes it, carrying the trace context
        of the request it is made for (stored with the value)."""
        try:
            await self.nc.jetstream(timeout=5).publish(
                f"$KV.{p.CONTEXT_BUCKET}.{key}", data,
                headers={**(headers or {}), TRACEPARENT: outgoing()[TRACEPARENT]})
        except APIError as exc:
            if exc.err_code in WRONG_LAST_SEQUENCE:
                raise KeyWrongLastSequenceError(description=exc.description) from None
            raise

    def _encoded(self, key: str, value: Any) -> bytes:
        """`value` as stored, once it is known to fit in one message (with the KV headers)."""
        data = orjson.dumps(value)
        check_fits(self.nc, data, None, f"the value of state key '{key}'",
                   extra=KV_HEADER_ROOM + TRACE_ROOM)
        return data

    async def _kv(self, key: str | None) -> KeyValue:
        if key is not None and (problem := state_key_problem(key)) is not None:
            raise p.MeshError(p.INVALID_INPUT, problem)
        if self._bucket is not None:
            return self._bucket
        async with self._opening:
            if self._bucket is None:
                self._bucket = await open_bucket(self.nc)
        return self._bucket


async def open_bucket(nc: Client) -> KeyValue:
    js = nc.jetstream(timeout=5)
    try:
        return await js.key_value(p.CONTEXT_BUCKET)
    except Exception:
        pass
    try:
        return await js.create_key_value(bucket=p.CONTEXT_BUCKET)
    except Exception as exc:
        raise p.MeshError(p.NOT_FOUND, f"the shared state (KV bucket {p.CONTEXT_BUCKET}) is not "
                          f"available: {exc or type(exc).__name__}; it needs JetStream on the "
                          "NATS server") from None


def decode(value: bytes | None) -> Any:
    """A stored value: JSON, or the text itself when another client stored plain text."""
    if not value:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode(errors="replace")

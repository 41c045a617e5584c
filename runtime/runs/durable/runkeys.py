"""Run keys: at most one run of a pipeline per key within `runs.keep`.

A key comes from `X-Mesh-Run-Key` or the pipeline's `run_key: ${{ expr }}` over its input.
KV `mesh-run-keys` maps a hash of (pipeline, key) to the run it started: the first start
creates the entry (compare-and-set: of two racing starts, one wins), every later start
reads it and gets that run instead of a new one. Entries expire with the bucket's age
limit, `runs.keep`. Keys are hashed, so any text is a key and none reaches a subject.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from runtime.core import protocol as p
from runtime.core.text import is_request_id
from runtime.nats.cluster import create_replicated, replica_choices

MAX_KEY = 1024  # characters of a run key (they are hashed: this only bounds the work)
DEFAULT_KEEP = 7 * 86400.0


def run_key_problem(key: object) -> str | None:
    """Why `key` cannot be a run key, or None."""
    if not isinstance(key, str | int) or isinstance(key, bool):
        return f"a run key is a string or an integer, not {type(key).__name__}"
    text = str(key)
    if not text:
        return "a run key cannot be empty"
    if len(text) > MAX_KEY:
        return f"run key is {len(text)} characters long; at most {MAX_KEY}"
    return None


def key_id(pipeline: str, key: str) -> str:
    """The KV key for a run key of a pipeline."""
    return hashlib.sha256(f"{pipeline}\n{key}".encode()).hexdigest()[:40]


class RunKeys:
    """The `mesh-run-keys` bucket."""

    def __init__(self, kv: KeyValue):
        self.kv = kv

    @classmethod
    async def open(cls, nc: Any, keep: float = DEFAULT_KEEP) -> RunKeys:
        js = nc.jetstream(timeout=5)
        try:
            kv = await js.key_value(p.RUN_KEYS_BUCKET)
        except Exception:
            kv = await create_replicated(
                lambda n: js.create_key_value(bucket=p.RUN_KEYS_BUCKET, history=1, ttl=keep,
                                              replicas=n),
                replica_choices(nc))
        return cls(kv)

    async def claim(self, pipeline: str, key: str, run: str) -> str | None:
        """None when `run` is the first with this key (it may start); else the first's id."""
        kid = key_id(pipeline, key)
        value = json.dumps({"run": run, "pipeline": pipeline}).encode()
        for _ in range(3):
            try:
                await self.kv.create(kid, value)
                return None
            except (KeyWrongLastSequenceError, BadRequestError):
                pass
            first = await self._read(kid)
            if first is not None:
                return first
            # Expired or unreadable between the two calls: try to create it again.
        raise p.MeshError(p.HANDLER_ERROR, "run key store is busy: try again")

    async def forget(self, pipeline: str, key: str, run: str) -> None:
        """A run that did not start after all (refused before its first step) frees its key."""
        kid = key_id(pipeline, key)
        try:
            entry = await self.kv.get(kid)
            if _run_of(entry.value) == run:
                await self.kv.delete(kid, last=entry.revision)
        except Exception:
            pass

    async def _read(self, kid: str) -> str | None:
        try:
            entry = await self.kv.get(kid)
        except KeyNotFoundError:
            return None
        run = _run_of(entry.value)
        if run is None:  # another client's garbage in our key: replace it
            with contextlib.suppress(Exception):
                await self.kv.delete(kid, last=entry.revision)
        return run


def _run_of(value: bytes | None) -> str | None:
    try:
        data = json.loads(value or b"")
    except ValueError:
        return None
    run = data.get("run") if isinstance(data, dict) else None
    return run if isinstance(run, str) and is_request_id(run) else None

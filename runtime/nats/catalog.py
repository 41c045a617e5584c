"""Discovery in JetStream KV, in the format OpenAgentMesh 0.2 reads and writes.

`mesh-catalog`/`catalog` is one JSON list shared by every process on the mesh, so it
is changed with compare-and-set; `mesh-registry`/<name> holds each name's full card.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from nats.js.api import ObjectStoreConfig
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from runtime.core import protocol as p
from runtime.load.mesh import Endpoint
from runtime.nats.bulk_put import put_all
from runtime.nats.catalog_fit import OverflowWarning, fit_catalog
from runtime.nats.cluster import create_replicated, replica_choices
from runtime.nats.records import (
    SkipLog,
    is_oversized,
    joined,
    listed,
    schema_hash,
    split_entries,
    without,
)
from runtime.pipeline.spec import PipelineSpec

log = logging.getLogger("mesh-runtime")
_CAS_ATTEMPTS = 50
# The `up` processes serving a catalog entry. Several may serve one name (a cluster); a
# stopping one removes only itself, and the entry leaves with the last of them.
# OpenAgentMesh reads entries with a model that ignores unknown fields.
INSTANCES = "x-instances"
Entries = list[dict[str, Any]]
_DEFINITION_LIMIT = 64 * 1024  # a card stays one small KV value


def registry_card(endpoint: Endpoint) -> dict[str, Any]:
    """The A2A-style card OpenAgentMesh 0.2 writes to `mesh-registry`."""
    skill: dict[str, Any] = {
        "id": endpoint.name, "name": endpoint.name,
        "description": endpoint.description, "tags": list(endpoint.tags),
    }
    if endpoint.input is not None:
        skill["inputSchema"] = endpoint.input.document
    extension: dict[str, Any] = {
        "subject": p.agent_subject(endpoint.name),
        "tags": list(endpoint.tags),
        "registered_at": datetime.now(UTC).isoformat(),
    }
    if endpoint.capabilities:  # the card's own `capabilities` is A2A's streaming/invocable
        extension["capabilities"] = list(endpoint.capabilities)
    extension.update(definition_of(endpoint))
    if endpoint.output is not None:
        if endpoint.streaming:  # a streaming agent's output schema describes each chunk
            extension["chunk_schema"] = endpoint.output.document
        else:
            skill["outputSchema"] = endpoint.output.document
    return {
        "name": endpoint.name,
        "description": endpoint.description,
        "version": endpoint.version,
        "capabilities": {"streaming": endpoint.streaming, "invocable": True},
        "skills": [skill],
        "x-agentmesh": extension,
    }


def definition_of(endpoint: Endpoint) -> dict[str, Any]:
    """`pipeline`: a pipeline's steps as mesh.yaml has them, for the web page's drawing,
    when they are small; OpenAgentMesh ignores the key."""
    spec = getattr(endpoint, "spec", None)
    if not isinstance(spec, PipelineSpec):
        return {}
    found = {"pipeline": spec.model_dump(mode="json", exclude_unset=True, by_alias=True,
                                         include={"steps", "returns", "timeout"})}
    try:
        small = len(json.dumps(found, default=str)) <= _DEFINITION_LIMIT
    except (TypeError, ValueError):
        small = False
    return found if small else {}


class Discovery:
    """The catalog and registry buckets; `open` returns None where JetStream is off."""

    def __init__(self, catalog: KeyValue, registry: KeyValue,
                 instances: KeyValue | None = None):
        self.catalog = catalog
        self.registry = registry
        self.instances = instances  # mesh-instances: heartbeats (see serve/instances.py)
        self.max_payload = 1024 * 1024  # the server's, set by `open`
        self.nc: Client | None = None  # set by `open`: bulk card writes go straight to it
        self.left_out: list[str] = []  # names the catalog key had no room for
        self._overflow = OverflowWarning()
        self.instance = uuid.uuid4().hex[:12]  # this process, in the entries it serves
        self.skipped = SkipLog("catalog entries")
        self._started = False  # twins are told at the first publish (the start)

    @classmethod
    async def open(cls, nc: Client, quiet: bool = False) -> Discovery | None:
        js = nc.jetstream(timeout=5)
        try:
            replicas = replica_choices(nc)  # a cluster keeps the catalog when a node dies
            buckets = [await _kv(js, b, replicas) for b in (
                p.CATALOG_BUCKET, p.REGISTRY_BUCKET, p.CONTEXT_BUCKET, p.INSTANCES_BUCKET)]
            try:  # OpenAgentMesh clients open this object store on connect
                await js.object_store(p.ARTIFACTS_BUCKET)
            except (NotFoundError, Exception):
                await create_replicated(lambda n: js.create_object_store(
                    bucket=p.ARTIFACTS_BUCKET, config=ObjectStoreConfig(replicas=n)), replicas)
        except Exception as exc:
            if not quiet:
                log.warning("JetStream is not available (%s): agents are served, but "
                            "discovery (catalog, registry) is off", _short(exc))
            return None
        discovery = cls(buckets[0], buckets[1], buckets[3])
        discovery.max_payload = nc.max_payload
        discovery.nc = nc
        return discovery

    async def publish(self, endpoints: Iterable[Endpoint]) -> None:
        """Write the cards, then add or replace the entries in the shared catalog at once."""
        endpoints = list(endpoints)
        if not endpoints:
            return
        await put_all(self.nc, self.registry, p.REGISTRY_BUCKET,
                      [(e.name, json.dumps(registry_card(e)).encode()) for e in endpoints])
        ours = {e.name: (e.catalog_entry(), schema_hash(e)) for e in endpoints}
        twins: dict[str, list[str]] = {}

        def add(current: Entries) -> Entries:
            twins.clear()  # a compare-and-set retry starts over
            existing = {e["name"]: e for e in current}
            ours_now = []
            for name, (entry, schema) in ours.items():
                serving = set(existing.get(name, {}).get(INSTANCES) or ()) | {self.instance}
                joined_entry, others = joined(existing.get(name), entry, sorted(serving),
                                              self.instance, schema)
                ours_now.append(joined_entry)
                if others:
                    twins[name] = others
            return [e for e in current if e["name"] not in ours] + ours_now

        await self._change(add)
        if twins and not self._started:
            log.warning(
                "twins: another `up` serves %s with a different definition (input or output "
                "schema) than this instance %s: callers get either answer. Give one of "
                "them another name, or the same schemas", listed(
                    f"{name!r} (instance {', '.join(others[:3])})"
                    for name, others in sorted(twins.items())), self.instance)
        self._started = True

    async def withdraw(self, names: Iterable[str]) -> None:
        """Leave the entries of `names`; an entry no other process serves leaves the catalog."""
        leaving = set(names)
        if leaving:
            await self._drop({self.instance}, leaving)

    async def forget(self, instances: set[str]) -> set[str]:
        """Take dead `instances` out of every entry; the names that left with them."""
        return await self._drop(instances, None)

    async def _drop(self, instances: set[str], names: set[str] | None) -> set[str]:
        emptied: set[str] = set()

        def remove(current: Entries) -> Entries:
            emptied.clear()  # a compare-and-set retry starts over
            kept = []
            for entry in current:
                serving = set(entry.get(INSTANCES) or ())
                if (entry["name"] not in names) if names is not None else not (
                        serving & instances):
                    kept.append(entry)
                    continue
                others = serving - instances
                if others:
                    kept.append(without(entry, sorted(others)))
                else:
                    emptied.add(entry["name"])
            return kept

        await self._change(remove)
        for name in emptied:
            try:
                await self.registry.delete(name)
            except Exception as exc:
                log.warning("could not remove %s from the registry: %s", name, _short(exc))
        return set(emptied)

    async def entries(self) -> list[dict[str, Any]]:
        """The catalog's readable entries (malformed ones are skipped and logged once)."""
        try:
            entry = await self.catalog.get(p.CATALOG_KEY)
        except KeyNotFoundError:
            return []
        return self._parse(entry.value)[0]

    def _parse(self, value: bytes | None) -> tuple[Entries, list[Any]]:
        """(readable entries, the others as written): the others are no concern of ours,
        so they are written back as they are, but for those too big to keep."""
        try:
            data = json.loads(value or b"[]")
        except (ValueError, RecursionError):  # not JSON, or nested past what Python parses
            data = []
        good, bad = split_entries(data)
        self.skipped.note(bad)
        return good, [entry for entry, _ in bad if not is_oversized(entry)]

    async def _change(self, edit: Callable[[Entries], Entries]) -> None:
        """Compare-and-set the catalog: other processes may be changing it at the same time."""
        for attempt in range(_CAS_ATTEMPTS):
            try:
                entry = await self.catalog.get(p.CATALOG_KEY)
                (current, foreign), revision = self._parse(entry.value), entry.revision
                stored = entry.value
            except KeyNotFoundError:
                current, foreign, revision, stored = [], [], None, None
            entries = edit(current)
            names = {e["name"] for e in entries}  # a malformed entry of one of them is replaced
            entries += [e for e in foreign
                        if not (isinstance(e, dict) and _hashable(e.get("name")) in names)]
            data, self.left_out = fit_catalog(entries, self.max_payload)
            try:
                if revision is None:
                    await self.catalog.create(p.CATALOG_KEY, data)
                elif data == stored:
                    pass  # nothing changed (a pass that found no one to remove): no write
                else:
                    await self.catalog.update(p.CATALOG_KEY, data, last=revision)
                self._overflow.check(self.left_out, len(entries) - len(self.left_out),
                                     self.max_payload)
                return
            except (KeyWrongLastSequenceError, Exception) as exc:
                if attempt == _CAS_ATTEMPTS - 1:
                    raise RuntimeError(f"could not update the catalog: {_short(exc)}") from exc
                await asyncio.sleep(random.uniform(0.002, 0.02) * (1 + attempt % 5))


async def _kv(js: Any, bucket: str, replicas: list[int]) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except Exception:
        kv: KeyValue = await create_replicated(
            lambda n: js.create_key_value(bucket=bucket, replicas=n), replicas)
        return kv


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str) else None


def _short(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__

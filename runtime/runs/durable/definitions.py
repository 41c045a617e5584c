"""Pipeline definitions that durable runs started on, kept in KV `mesh-pipelines` (key = the
definition's hash), so a run finishes on its own definition across reloads and resumes.

The stored value is everything a resume needs to run the pipeline again: its spec, its
input and output schemas (self-contained documents), its timeouts. It is read back only
by `up` processes, which check it as they check a file: a value that does not load is a
clear error for that run, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from runtime.core import protocol as p
from runtime.load.mesh import PipelineDef, fingerprint
from runtime.load.schemas import compile_schema, schema_document
from runtime.nats.cluster import create_replicated, replica_choices
from runtime.pipeline.engine import compile_pipeline
from runtime.pipeline.spec import PipelineSpec, walk_steps

REFRESH = 3600.0  # a definition in use is put again this often, so it outlives its runs
DEFAULT_KEEP = 7 * 86400.0


class DefinitionError(Exception):
    """A stored definition that is missing or cannot be loaded."""


def document(definition: PipelineDef) -> dict[str, Any]:
    """What is stored of a pipeline definition."""
    return {"name": definition.name, "spec": definition.spec.model_dump(mode="json",
                                                                      by_alias=True,
                                                                      exclude_none=True),
            "input": schema_document(definition.input),
            "output": schema_document(definition.output), "timeout": definition.timeout,
            "step_timeout": definition.step_timeout, "concurrency": definition.concurrency}


def definition_hash(definition: PipelineDef) -> str:
    """A stable hash of what the definition does (16 hex), the same in every process."""
    return _digest(document(definition))


def _digest(doc: Any) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rebuild(doc: Any) -> PipelineDef:
    """A runnable definition from a stored document; raises DefinitionError."""
    try:
        spec = PipelineSpec.model_validate(doc["spec"])
        name = str(doc["name"])
        # Its names were checked when it was first loaded; the callee may have gone since,
        # which a step finds out as `not_found`, like any call.
        called = {s.call for _, s in walk_steps(spec.steps) if s.call}
        offered = {c: 1 << 30 for _, s in walk_steps(spec.steps)
                   for c in (s.capability, s.broadcast) if c}
        compiled, problems = compile_pipeline(name, spec, called | {name}, offered, durable=True)
        if compiled is None:
            raise DefinitionError("; ".join(f"{path}: {message}" for path, message in problems))
        inp = compile_schema(doc["input"]) if doc.get("input") is not None else None
        out = compile_schema(doc["output"]) if doc.get("output") is not None else None
        timeout, step_timeout = float(doc["timeout"]), float(doc["step_timeout"])
        return PipelineDef(
            name=name, description=spec.description, version=spec.version,
            tags=("pipeline", *spec.tags), input=inp, output=out, timeout=timeout,
            concurrency=int(doc.get("concurrency") or 64), streaming=False,
            fingerprint=fingerprint(doc), step_timeout=step_timeout, spec=spec,
            compiled=compiled, durable=True)
    except DefinitionError:
        raise
    except Exception as exc:
        raise DefinitionError(f"stored definition does not load: {type(exc).__name__}: "
                              f"{str(exc)[:200]}") from None


class Definitions:
    """The `mesh-pipelines` bucket, with what this process put or read recently kept."""

    def __init__(self, kv: KeyValue):
        self.kv = kv
        self._put_at: dict[str, float] = {}
        self._loaded: dict[str, PipelineDef] = {}
        self._digests: dict[str, str] = {}  # fingerprint -> hash: hashed once per definition

    @classmethod
    async def open(cls, nc: Any, keep: float = DEFAULT_KEEP) -> Definitions:
        js = nc.jetstream(timeout=5)
        try:
            kv = await js.key_value(p.DEFINITIONS_BUCKET)
        except Exception:
            kv = await create_replicated(
                lambda n: js.create_key_value(bucket=p.DEFINITIONS_BUCKET, history=1,
                                              ttl=keep + 86400, replicas=n),
                replica_choices(nc))
        return cls(kv)

    async def keep(self, definition: PipelineDef) -> str:
        """Store `definition` (if not stored within the hour) and return its hash."""
        digest = self._digests.get(definition.fingerprint)
        if digest is None:
            if len(self._digests) >= 1024:
                self._digests.clear()
            digest = self._digests[definition.fingerprint] = definition_hash(definition)
        now = time.monotonic()
        if now - self._put_at.get(digest, -REFRESH) >= REFRESH:
            await self.kv.put(digest, json.dumps(document(definition)).encode())
            self._put_at[digest] = now
            self._loaded[digest] = definition
        return digest

    async def load(self, digest: str) -> PipelineDef:
        """The definition a run started on; raises DefinitionError."""
        known = self._loaded.get(digest)
        if known is not None:
            return known
        try:
            entry = await self.kv.get(digest)
        except KeyNotFoundError:
            raise DefinitionError(f"definition {digest} is not in {p.DEFINITIONS_BUCKET} (kept "
                                  "as long as runs.keep)") from None
        except Exception as exc:
            raise DefinitionError(f"cannot read definition {digest}: {exc}") from None
        try:
            doc = json.loads(entry.value or b"")
        except ValueError:
            raise DefinitionError(f"definition {digest} is not JSON") from None
        if not isinstance(doc, dict) or _digest(doc) != digest:
            # Another client wrote it: running it would run their steps under this run.
            raise DefinitionError(f"definition {digest} in {p.DEFINITIONS_BUCKET} does not "
                                  "match its hash")
        definition = rebuild(doc)
        if len(self._loaded) >= 256:
            self._loaded.clear()
        self._loaded[digest] = definition
        return definition

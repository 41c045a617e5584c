"""The loaded, checked mesh: everything resolved before NATS is touched, and immutable."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.core.issues import Issue
from runtime.load.handlers import Handler
from runtime.load.model import AgentSpec, ExternalAgent, MeshSpec
from runtime.load.schemas import PayloadSchema
from runtime.load.triggercheck import TriggerDef
from runtime.pipeline.engine import CompiledPipeline
from runtime.pipeline.spec import PipelineSpec


def fingerprint(*parts: Any) -> str:
    """A stable text of a definition, so a reload can tell changed from unchanged."""
    return json.dumps(parts, sort_keys=True, default=repr)


@dataclass(frozen=True)
class Endpoint:
    """What every served name has: schemas, limits and what the catalog says of it."""

    name: str
    description: str
    version: str
    tags: tuple[str, ...]
    input: PayloadSchema | None
    output: PayloadSchema | None
    timeout: float
    concurrency: int
    streaming: bool
    fingerprint: str
    capabilities: tuple[str, ...] = ()  # also served on mesh.capability.<c>, mesh.broadcast.<c>
    queue: int | None = None  # requests that may wait for a slot; None: 4 x concurrency
    triggers: tuple[str, ...] = ()  # what starts it besides calls: `subject orders.created`
    events: tuple[str, ...] = ()  # the event types its `emit:` steps publish

    @property
    def queue_limit(self) -> int:
        return 4 * self.concurrency if self.queue is None else self.queue

    def catalog_entry(self) -> dict[str, Any]:
        entry = {
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "tags": list(self.tags),
            "invocable": True,
            "streaming": self.streaming,
        }
        if self.capabilities:  # OpenAgentMesh ignores keys it does not know
            entry["capabilities"] = list(self.capabilities)
        if self.triggers:
            entry["triggers"] = list(self.triggers)
        if self.events:
            entry["events"] = list(self.events)
        return entry


@dataclass(frozen=True)
class AgentDef(Endpoint):
    spec: AgentSpec = field(default=None, repr=False)  # type: ignore[assignment]
    handler: Handler = field(default=None, repr=False)  # type: ignore[assignment]


@dataclass(frozen=True)
class PipelineDef(Endpoint):
    step_timeout: float = 30.0  # defaults.timeout: what a step without `timeout` waits
    spec: PipelineSpec = field(default=None, repr=False)  # type: ignore[assignment]
    compiled: CompiledPipeline = field(default=None, repr=False)  # type: ignore[assignment]
    durable: bool = False  # its own `durable:`, else defaults.durable


@dataclass(frozen=True)
class ExternalDef:
    name: str
    spec: ExternalAgent
    input: PayloadSchema | None
    output: PayloadSchema | None


@dataclass(frozen=True)
class Mesh:
    """A mesh file, loaded and checked whole; a reload diffs two of these."""

    path: Path
    spec: MeshSpec
    agents: Mapping[str, AgentDef]
    pipelines: Mapping[str, PipelineDef]
    external: Mapping[str, ExternalDef]
    watched_files: frozenset[Path]  # mesh.yaml and every schema file it refers to
    handler_files: frozenset[Path]
    warnings: tuple[Issue, ...] = ()
    triggers: tuple[TriggerDef, ...] = ()  # every agent's and pipeline's, checked

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def endpoints(self) -> dict[str, Endpoint]:
        return {**self.agents, **self.pipelines}

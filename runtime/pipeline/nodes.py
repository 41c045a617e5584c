"""A compiled pipeline's nodes (one per step, frozen at compile time) and one run's context.

The compiler builds them, `steps` runs them; both import this module, so neither needs the
other's internals.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from runtime.core.bus import Bus, Caller
from runtime.core.protocol import MeshError
from runtime.pipeline.expressions import Expression, Template
from runtime.pipeline.observer import RunObserver

CallFn = Caller
"""`await call(agent_name, payload, timeout_seconds, request_id)`: output, or raises MeshError."""

Scope = dict[str, Any]


class StepFailure(Exception):
    """A step that failed for good: the cause's code and message, and where (branch, index)."""

    def __init__(self, code: str, message: str, attempt: int = 1):
        super().__init__(message)
        self.code = code
        self.message = message
        self.attempt = attempt
        self.where: dict[str, Any] = {}

    def error(self) -> MeshError:
        return MeshError(self.code, self.message)


@dataclass(frozen=True, slots=True)
class CallNode:
    """A call of one agent or pipeline, with its payload template and retry policy."""

    agent: str
    payload: Template | None  # None: the item inside for_each, else the pipeline's input
    timeout: float | None  # None: the run's default timeout
    attempts: int
    backoff: float
    max_backoff: float
    capability: bool = False  # `agent` names a capability: any agent offering it answers


class BusNode(Protocol):
    """A step body that reaches the mesh through the run's Bus (broadcast, shared state)."""

    async def run(self, scope: Scope, ctx: RunContext) -> Any: ...


@dataclass(frozen=True, slots=True)
class ParallelNode:
    """Branches run concurrently; each branch is a sequence of steps."""

    branches: tuple[tuple[str, tuple[StepNode, ...]], ...]
    timeout: float | None  # bounds the whole set of branches


@dataclass(frozen=True, slots=True)
class StepNode:
    """A compiled step."""

    id: str | None
    when: Expression | None
    for_each: Expression | None
    max_concurrency: int | None
    max_items: int  # more items than this is the caller's invalid_input, before any call
    body: CallNode | ParallelNode | BusNode
    has_fallback: bool
    fallback: Any
    path: str = ""  # where it is in the run, for observers: summary, analysis.keywords


@dataclass(frozen=True, slots=True)
class RunContext:
    """What one run needs besides its scope."""

    call: CallFn
    request_id: str
    default_timeout: float
    deadline: float | None  # loop time when the pipeline's own timeout expires
    loop: asyncio.AbstractEventLoop
    bus: Bus | None = None  # broadcasts and shared state; None where only calls are possible
    observer: RunObserver | None = None  # told of each step (the run journal), if any
    limit: float | None = None  # loop time when the pipeline's own timeout fires
    # Inside one for_each item whose body has steps of its own (parallel branches): their
    # compiled paths start with the step's (`a.x`), the run's with the item's (`a[3].x`).
    rename: tuple[str, str] | None = None

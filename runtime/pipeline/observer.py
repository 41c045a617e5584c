"""The hook through which a pipeline run is seen: its lifecycle, step by step.

The engine knows only this Protocol; the run journal (runtime.runs) implements it, and so may
anything else that wants to watch runs (durable steps, trace spans). Without an observer the
engine runs exactly as before and pays one `is None` test per step.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Protocol

from runtime.core.protocol import MeshError

# A resumed durable run's recorded step outputs, by step path: the engine takes a step's
# output from here instead of running it (runtime.runs.durable sets it on the run's task).
RECORDED: ContextVar[Mapping[str, Any] | None] = ContextVar("mesh_recorded_steps",
                                                             default=None)


class RunObserver(Protocol):
    """Told of one run's lifecycle, in order, on the run's own task (a parallel branch or a
    for_each item: on that branch's or item's task, so a ContextVar set in `step_started` is
    seen by the step's calls and nested steps).

    Step paths name a step inside the run: `summary`, `analysis.keywords` (a parallel branch;
    a branch of several steps: `analysis.keywords.<id or index>`), `per_section[3]` (one item
    of a for_each step; the whole step is `per_section`). Every callback is awaited before the
    engine goes on; an exception it raises fails the run, so an observer that must never fail a
    run (the journal) catches its own.
    """

    async def run_started(self, payload: Any) -> None:
        """The run begins with `payload`, the pipeline's validated input."""

    async def step_started(self, path: str, attempt: int) -> None:
        """A step (or one for_each item) starts an attempt: 1, then 2.. for a call's retries.
        Steps that do not call (parallel, broadcast, state) have one attempt."""

    async def step_finished(self, path: str, attempt: int, output: Any) -> None:
        """The step's result, used by the rest of the run (after a failure, the `on_error`
        value)."""

    async def step_failed(self, path: str, attempt: int, error: MeshError) -> None:
        """One attempt failed with `error` (code, message). Followed by `step_started` with
        attempt + 1 when a retry follows, by `step_finished` when `on_error` replaces it."""

    async def step_skipped(self, path: str) -> None:
        """The step's `when` was false: it did not run; its result is null."""

    async def run_finished(self, output: Any) -> None:
        """The run's result, before it is sent to the caller."""

    async def run_failed(self, error: MeshError) -> None:
        """The run ends with `error` (step_failed, timeout, invalid_input, ...)."""

    async def run_cancelled(self) -> None:
        """The run's task was cancelled (`runs cancel`, or the process shutting down)."""


class Observers:
    """Several observers as one: each callback goes to each, in the order given (the journal
    first, say, then trace spans)."""

    __slots__ = ("_all",)

    def __init__(self, *observers: RunObserver):
        self._all = observers

    async def run_started(self, payload: Any) -> None:
        for observer in self._all:
            await observer.run_started(payload)

    async def step_started(self, path: str, attempt: int) -> None:
        for observer in self._all:
            await observer.step_started(path, attempt)

    async def step_finished(self, path: str, attempt: int, output: Any) -> None:
        for observer in self._all:
            await observer.step_finished(path, attempt, output)

    async def step_failed(self, path: str, attempt: int, error: MeshError) -> None:
        for observer in self._all:
            await observer.step_failed(path, attempt, error)

    async def step_skipped(self, path: str) -> None:
        for observer in self._all:
            await observer.step_skipped(path)

    async def run_finished(self, output: Any) -> None:
        for observer in self._all:
            await observer.run_finished(output)

    async def run_failed(self, error: MeshError) -> None:
        for observer in self._all:
            await observer.run_failed(error)

    async def run_cancelled(self) -> None:
        for observer in self._all:
            await observer.run_cancelled()

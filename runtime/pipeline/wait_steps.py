"""`wait: {signal: NAME, timeout: 24h}` and `sleep: 10m` steps: their load-time checks and
their nodes.

Waiting is durable, so what it means lives with durable runs (runtime.runs.durable): a
running durable run sets `WAITS` to its own `Waits`, and these nodes only ask it. Outside a
durable run (which the load-time checks rule out) they fail cleanly.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from runtime.core.issues import dotted
from runtime.core.protocol import HANDLER_ERROR
from runtime.pipeline.expressions import Path, Problem
from runtime.pipeline.nodes import RunContext, Scope, StepFailure
from runtime.pipeline.spec import SIGNAL_PATTERN, Step

_SIGNAL = re.compile(SIGNAL_PATTERN)


class Waits(Protocol):
    """What a durable run offers its wait and sleep steps."""

    async def signal(self, name: str, timeout: float | None) -> Any:
        """The signal's JSON once it arrives; StepFailure(`timeout`) when it does not in time."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Returns once `seconds` have passed since the step first started (across resumes)."""
        ...


WAITS: ContextVar[Waits | None] = ContextVar("mesh_waits", default=None)


def _waits() -> Waits:
    waits = WAITS.get()
    if waits is None:
        raise StepFailure(HANDLER_ERROR, "wait and sleep steps run only in durable runs")
    return waits


@dataclass(frozen=True, slots=True)
class WaitNode:
    """Parks the run until signal `name`; the step's result is the signal's JSON."""

    name: str
    timeout: float | None

    async def run(self, scope: Scope, ctx: RunContext) -> Any:
        return await _waits().signal(self.name, self.timeout)


@dataclass(frozen=True, slots=True)
class SleepNode:
    """Parks the run for `seconds`; the step's result is null."""

    seconds: float

    async def run(self, scope: Scope, ctx: RunContext) -> Any:
        await _waits().sleep(self.seconds)
        return None


class WaitStepCompiling:
    """Part of PipelineCompiler (a mixin): checks and compiles wait and sleep steps."""

    problems: list[Problem]
    durable: bool
    signals: dict[str, Path]  # signal name -> the wait step that awaits it

    def _problem(self, path: Path, message: str) -> None:
        raise NotImplementedError

    def _wait_step(self, step: Step, path: Path) -> WaitNode | SleepNode:
        kind = "wait" if step.wait is not None else "sleep"
        if not self.durable:
            self._problem((*path, kind), f"{kind} steps need a durable pipeline: add "
                          "`durable: true` to the pipeline (or to defaults:)")
        if "parallel" in path:
            self._problem((*path, kind), f"a {kind} step cannot run inside parallel (a parked "
                          "run holds no branch open); put it in the top-level steps")
        if step.for_each is not None:
            self._problem((*path, "for_each"), f"for_each does not apply to a {kind} step")
        if step.timeout is not None:
            hint = "; use wait: {signal: ..., timeout: ...}" if kind == "wait" else ""
            self._problem((*path, "timeout"), f"timeout does not apply to a {kind} step{hint}")
        if step.sleep is not None:
            return SleepNode(step.sleep)
        assert step.wait is not None
        name = step.wait.signal
        if not _SIGNAL.fullmatch(name):
            self._problem((*path, "wait", "signal"), f"signal name {name!r} must be letters, "
                          "digits, _ and - (it is one NATS subject token)")
        elif name in self.signals:
            first = dotted(self.signals[name])
            self._problem((*path, "wait", "signal"), f"signal '{name}' is already awaited by "
                          f"the step at {first}; give each wait step its own signal")
        else:
            self.signals[name] = path
        return WaitNode(name, step.wait.timeout)

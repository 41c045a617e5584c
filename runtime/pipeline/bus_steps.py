"""Steps that reach the mesh beyond one call: `broadcast`, `get_state`, `set_state`, `emit`.

Each compiles to a frozen node whose `run(scope, ctx)` goes through the run's Bus; failures
become StepFailure, so `when`, `for_each`, `on_error` and `retry` treat them like calls.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from runtime.core.bus import Bus, state_key_problem
from runtime.core.protocol import HANDLER_ERROR, INVALID_INPUT, NOT_FOUND, TIMEOUT, MeshError
from runtime.pipeline.expressions import Template
from runtime.pipeline.nodes import RunContext, Scope, StepFailure
from runtime.pipeline.steps import budget, evaluate, seconds_text

T = TypeVar("T")
DEFAULT_WITHIN = 1.0
DEFAULT_MIN_ANSWERS = 1


@dataclass(frozen=True, slots=True)
class BroadcastNode:
    """Ask every agent offering `capability`; the result is the list of answers."""

    capability: str
    payload: Template | None  # None: the item inside for_each, else the pipeline's input
    within: float
    min_answers: int
    max_answers: int

    async def run(self, scope: Scope, ctx: RunContext) -> Any:
        if self.payload is not None:
            payload = evaluate(self.payload.render, scope)
        else:
            payload = scope["item"] if "item" in scope else scope["input"]
        within = budget(self.within, ctx)
        answers = await _reach(_bus(ctx).broadcast(self.capability, payload, within,
                                                   ctx.request_id, max_answers=self.max_answers))
        ok = sum(a["status"] == "ok" for a in answers)
        if ok < self.min_answers:
            raise StepFailure(_cause(answers), _shortfall(self, answers, ok, within))
        return answers


@dataclass(frozen=True, slots=True)
class EmitNode:
    """Publish an event of the pipeline (CloudEvents on mesh.agent.<pipeline>.events); the
    step's result is the event's data."""

    source: str
    type: str
    data: Template | None  # None: the item inside for_each, else the pipeline's input

    async def run(self, scope: Scope, ctx: RunContext) -> Any:
        if self.data is not None:
            data = evaluate(self.data.render, scope)
        else:
            data = scope["item"] if "item" in scope else scope["input"]
        await _reach(_bus(ctx).emit(self.source, self.type, data))
        return data


@dataclass(frozen=True, slots=True)
class GetStateNode:
    """Read one key of the shared state: its value, or null when it is missing."""

    key: Template

    async def run(self, scope: Scope, ctx: RunContext) -> Any:
        return await _reach(_bus(ctx).state.get(_key(self.key, scope)))


@dataclass(frozen=True, slots=True)
class SetStateNode:
    """Write one key of the shared state; the step's result is the value written."""

    key: Template
    value: Template

    async def run(self, scope: Scope, ctx: RunContext) -> Any:
        key = _key(self.key, scope)
        value = evaluate(self.value.render, scope)
        await _reach(_bus(ctx).state.put(key, value))
        return value


async def _reach(work: Awaitable[T]) -> T:
    """Await mesh work; any failure (a NATS one included) is the step's failure."""
    try:
        return await work
    except MeshError as exc:
        raise StepFailure(exc.code, exc.message) from None
    except Exception as exc:
        raise StepFailure(HANDLER_ERROR, f"{type(exc).__name__}: {exc}") from None


def _bus(ctx: RunContext) -> Bus:
    if ctx.bus is None:
        raise StepFailure(NOT_FOUND, "this run has no connection to the mesh")
    return ctx.bus


def _key(template: Template, scope: Scope) -> str:
    key = evaluate(template.render, scope)
    problem = state_key_problem(key)
    if problem is not None:
        raise StepFailure(INVALID_INPUT, problem)
    assert isinstance(key, str)
    return key


def _cause(answers: list[dict[str, Any]]) -> str:
    """The code a short broadcast fails with: nobody answered, an agent's error, or time."""
    if not answers:
        return NOT_FOUND
    for answer in answers:
        if answer["status"] == "error":
            return str(answer["error"].get("code") or TIMEOUT)
    return TIMEOUT


def _shortfall(node: BroadcastNode, answers: list[dict[str, Any]], ok: int,
               within: float) -> str:
    if not answers:
        return f"no agent offering '{node.capability}' answered within {seconds_text(within)}"
    errors = len(answers) - ok
    return (f"broadcast to '{node.capability}': {ok} ok and {errors} failed within "
            f"{seconds_text(within)}; min_answers is {node.min_answers}")

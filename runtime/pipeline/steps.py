"""Running compiled pipeline steps: calls with retry and timeout, parallel branches, for_each.

Everything here is decided at compile time and frozen; one run's state lives in its `scope`
dict and its `RunContext`, so one compiled pipeline can run many times at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any

from runtime.core.protocol import HANDLER_ERROR, INVALID_INPUT, STEP_FAILED, TIMEOUT, MeshError
from runtime.pipeline.expressions import EvaluationError
from runtime.pipeline.nodes import (
    BusNode,
    CallNode,
    ParallelNode,
    RunContext,
    Scope,
    StepFailure,
    StepNode,
)
from runtime.pipeline.observer import RECORDED, RunObserver
from runtime.tracing import step_span


async def run_sequence(steps: tuple[StepNode, ...], scope: Scope, ctx: RunContext) -> Any:
    """Runs steps in order, recording each one's result under `steps.<id>`; the last result."""
    results = scope["steps"]
    result = None
    for step in steps:
        result = await run_step(step, scope, ctx)
        if step.id is not None:
            results[step.id] = result
    return result


async def run_step(step: StepNode, scope: Scope, ctx: RunContext) -> Any:
    """One step: `when`, then its body once or for each item; `on_error` replaces a failure.
    When the run is traced, inside a `step <path>` span (the parent of its calls); a step
    replayed from the journal emits none."""
    path = step.path if ctx.rename is None else ctx.rename[1] + step.path[len(ctx.rename[0]):]
    recorded = RECORDED.get()
    span = step_span(path) if recorded is None or path not in recorded else None
    if span is None:
        return await _step(step, scope, ctx, path)
    with span:
        return await _step(step, scope, ctx, path)


async def _step(step: StepNode, scope: Scope, ctx: RunContext, path: str) -> Any:
    observer = ctx.observer
    try:
        if step.when is not None and not evaluate(step.when.truthy, scope):
            if observer is not None:
                await observer.step_skipped(path)
            return None
        if step.for_each is None:
            return await _run_body(step.body, scope, ctx, path)
        if observer is None:
            return await _each(step, scope, ctx, path)
        if (recorded := RECORDED.get()) is not None and path in recorded:
            return recorded[path]
        return await _observed(_each(step, scope, ctx, path), observer, path)
    except StepFailure as failure:
        if step.has_fallback:
            if observer is not None:
                await observer.step_finished(path, failure.attempt, step.fallback)
            return step.fallback
        raise


async def _each(step: StepNode, scope: Scope, ctx: RunContext, path: str) -> list[Any]:
    assert step.for_each is not None
    items = evaluate(step.for_each.render, scope)
    if not isinstance(items, list):
        raise StepFailure(
            STEP_FAILED,
            f"for_each expression {step.for_each.text!r} gave {_json_type(items)}, not a list",
        )
    if len(items) > step.max_items:
        raise _too_many(step, len(items), ctx.request_id)
    return await _for_each(step, items, scope, ctx, path)


async def _observed(work: Coroutine[Any, Any, Any], observer: RunObserver, path: str) -> Any:
    """`work` as one attempt of the step at `path`, told to the observer."""
    await observer.step_started(path, 1)
    try:
        result = await work
    except StepFailure as failure:
        await observer.step_failed(path, 1, failure.error())
        raise
    await observer.step_finished(path, 1, result)
    return result


def _too_many(step: StepNode, count: int, request_id: str) -> MeshError:
    # Not a StepFailure: on_error must not turn a request this big into a result.
    assert step.for_each is not None
    name = f"step '{step.id}'" if step.id else "a for_each step"
    return MeshError(
        INVALID_INPUT,
        f"{name}: for_each {step.for_each.text} gave {count:,} items; it takes at most "
        f"{step.max_items:,} (its max_items)",
        request_id=request_id,
        details={"step": step.id, "items": count, "max_items": step.max_items},
    )


async def _for_each(step: StepNode, items: list[Any], scope: Scope, ctx: RunContext,
                    step_path: str) -> list[Any]:
    results: list[Any] = [None] * len(items)
    nested = ctx.observer is not None and isinstance(step.body, ParallelNode)

    async def one(index: int) -> None:
        path = f"{step_path}[{index}]" if ctx.observer is not None else ""
        own = dataclasses.replace(ctx, rename=(step.path, path)) if nested else ctx
        try:
            results[index] = await _run_body(
                step.body, {**scope, "item": items[index], "index": index}, own, path
            )
        except StepFailure as failure:
            if step.has_fallback:  # per item, so one bad item does not lose the others
                results[index] = step.fallback
                if ctx.observer is not None:
                    await ctx.observer.step_finished(path, failure.attempt, step.fallback)
                return
            failure.where["index"] = index
            raise

    limit = step.max_concurrency
    if limit is None or limit >= len(items):
        await _all([one(i) for i in range(len(items))])
    else:
        # A few workers pulling from one iterator: never more than `limit` tasks, even for
        # long lists, and items still start in order.
        indexes = iter(range(len(items)))

        async def worker() -> None:
            for index in indexes:
                await one(index)

        await _all([worker() for _ in range(limit)])
    return results


async def _run_body(body: CallNode | ParallelNode | BusNode, scope: Scope,
                    ctx: RunContext, path: str) -> Any:
    if ctx.observer is not None and (recorded := RECORDED.get()) is not None and path in recorded:
        return recorded[path]  # a resumed durable run: this step finished before, not again
    if isinstance(body, CallNode):
        return await _call(body, scope, ctx, path)  # tells the observer of each attempt
    if ctx.observer is not None:
        return await _observed(_other_body(body, scope, ctx), ctx.observer, path)
    return await _other_body(body, scope, ctx)


async def _other_body(body: ParallelNode | BusNode, scope: Scope, ctx: RunContext) -> Any:
    if not isinstance(body, ParallelNode):
        return await body.run(scope, ctx)
    if body.timeout is None:
        return await _parallel(body, scope, ctx)
    try:
        async with asyncio.timeout(body.timeout):
            return await _parallel(body, scope, ctx)
    except TimeoutError:
        message = f"branches did not finish within {seconds_text(body.timeout)}"
        raise StepFailure(TIMEOUT, message) from None


async def _parallel(node: ParallelNode, scope: Scope, ctx: RunContext) -> dict[str, Any]:
    async def branch(name: str, steps: tuple[StepNode, ...]) -> Any:
        try:
            if len(steps) == 1:
                return await run_step(steps[0], scope, ctx)
            # A branch's own steps see each other, but not a sibling branch's.
            return await run_sequence(steps, {**scope, "steps": dict(scope["steps"])}, ctx)
        except StepFailure as failure:
            failure.where["branch"] = name
            raise

    values = await _all([branch(name, steps) for name, steps in node.branches])
    return {name: value for (name, _), value in zip(node.branches, values, strict=True)}


async def _call(node: CallNode, scope: Scope, ctx: RunContext, path: str) -> Any:
    observer = ctx.observer
    if node.payload is not None:
        try:
            payload = evaluate(node.payload.render, scope)
        except StepFailure as failure:
            if observer is not None:  # an attempt that failed before its call
                await observer.step_started(path, 1)
                await observer.step_failed(path, 1, failure.error())
            raise
    else:
        payload = scope["item"] if "item" in scope else scope["input"]
    timeout = node.timeout or ctx.default_timeout
    target = f"capability '{node.agent}'" if node.capability else node.agent
    wait = node.backoff
    code, message = HANDLER_ERROR, ""
    attempt = 0
    while attempt < node.attempts:
        if attempt:
            await asyncio.sleep(min(wait, node.max_backoff))
            wait *= 2
        attempt += 1
        if observer is not None:
            await observer.step_started(path, attempt)
        try:
            if node.capability:
                sent = ctx.call(node.agent, payload, budget(timeout, ctx), ctx.request_id,
                                capability=True)
            else:
                sent = ctx.call(node.agent, payload, budget(timeout, ctx), ctx.request_id)
            if ctx.limit is not None and ctx.loop.time() + timeout >= ctx.limit:
                result = await sent  # the pipeline's own timeout fires first: no timer here
            else:
                async with asyncio.timeout(timeout):
                    result = await sent
        except TimeoutError:
            code, message = TIMEOUT, f"{target} did not answer within {seconds_text(timeout)}"
        except MeshError as exc:
            code, message = exc.code, exc.message
        except Exception as exc:  # a bug in `call` must still end as a clean step failure
            code, message = HANDLER_ERROR, f"{type(exc).__name__}: {exc}"
        else:
            if observer is not None:
                await observer.step_finished(path, attempt, result)
            return result
        if observer is not None:
            await observer.step_failed(path, attempt, MeshError(code, message))
        if code == INVALID_INPUT:
            break  # the same payload will be just as invalid next time
    raise StepFailure(code, message, attempt)


def budget(timeout: float, ctx: RunContext) -> float:
    """The step timeout, cut to what is left of the pipeline's own, so callees know the deadline."""
    if ctx.deadline is None:
        return timeout
    return max(min(timeout, ctx.deadline - ctx.loop.time()), 0.001)


async def _all(coros: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Results in order; the first failure cancels the others and is raised alone."""
    if len(coros) == 1:
        return [await coros[0]]
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coro) for coro in coros]
    except BaseExceptionGroup as failed:
        # The first failure is what cancelled the rest; later ones (if any) are echoes.
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


def evaluate(fn: Callable[[Scope], Any], scope: Scope) -> Any:
    try:
        return fn(scope)
    except EvaluationError as exc:
        raise StepFailure(STEP_FAILED, str(exc)) from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an object" if isinstance(value, dict) else type(value).__name__


def seconds_text(value: float) -> str:
    """2.0 -> '2s', 0.25 -> '250ms', for messages."""
    if value < 1:
        return f"{value * 1000:g}ms"
    return f"{value:g}s"

"""Pipelines: every check and compilation at load time (`compile_pipeline`), then `run`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from runtime.core.bus import Bus
from runtime.core.protocol import HANDLER_ERROR, STEP_FAILED, TIMEOUT, MeshError
from runtime.pipeline.checks import check_constants, find_cycles
from runtime.pipeline.compile import PipelineCompiler
from runtime.pipeline.expressions import EvaluationError, Problem, Template
from runtime.pipeline.nodes import CallFn, RunContext, StepFailure, StepNode
from runtime.pipeline.observer import RunObserver
from runtime.pipeline.spec import PipelineSpec
from runtime.pipeline.steps import run_step, seconds_text

__all__ = [
    "CallFn",
    "CompiledPipeline",
    "Problem",
    "check_constants",
    "compile_pipeline",
    "find_cycles",
]


class CompiledPipeline:
    """A checked pipeline, ready to run; immutable, so runs may overlap freely."""

    __slots__ = ("_returns", "_steps", "_timeout", "name")

    def __init__(
        self,
        name: str,
        steps: tuple[StepNode, ...],
        returns: Template | None,
        timeout: float | None,
    ):
        self.name = name
        self._steps = steps
        self._returns = returns
        self._timeout = timeout

    async def run(
        self,
        payload: Any,
        *,
        call: CallFn,
        bus: Bus | None = None,
        request_id: str,
        mesh_name: str,
        default_timeout: float,
        caller_left: float | None = None,
        observer: RunObserver | None = None,
    ) -> Any:
        """The pipeline's result for `payload`; raises MeshError (`step_failed`, `timeout`).

        `caller_left` is how many seconds the request's caller still waits: steps are given
        no more than what is left of it, nor of the pipeline's own `timeout`. `observer`, if
        given, is told of the run and of each step as they happen.
        """
        if observer is None:
            return await self._bounded(payload, call, bus, request_id, mesh_name,
                                       default_timeout, caller_left, None)
        await observer.run_started(payload)
        try:
            result = await self._bounded(payload, call, bus, request_id, mesh_name,
                                         default_timeout, caller_left, observer)
        except Exception as exc:
            await observer.run_failed(exc if isinstance(exc, MeshError) else MeshError(
                HANDLER_ERROR, f"{type(exc).__name__}: {exc}", agent=self.name))
            raise
        except asyncio.CancelledError:
            await observer.run_cancelled()
            raise
        await observer.run_finished(result)
        return result

    async def _bounded(self, payload: Any, call: CallFn, bus: Bus | None, request_id: str,
                       mesh_name: str, default_timeout: float, caller_left: float | None,
                       observer: RunObserver | None) -> Any:
        loop = asyncio.get_running_loop()
        # Always bounded: without a timeout of its own, the pipeline has the default one,
        # as an agent does; each step gets no more than what is left of it, nor of what
        # the request's caller still waits.
        timeout = self._timeout or default_timeout
        deadline = loop.time() + timeout
        budget = deadline if caller_left is None else min(deadline, loop.time() + caller_left)
        ctx = RunContext(call, request_id, default_timeout, budget, loop, bus, observer, deadline)
        scope = {
            "input": payload,
            "steps": {},
            "mesh": {"name": mesh_name, "request_id": request_id},
        }
        try:
            async with asyncio.timeout_at(deadline):
                return await self._run(scope, ctx)
        except TimeoutError:
            raise self._timed_out(timeout, request_id) from None
        except MeshError as exc:
            # A callee given the cut-down budget may report its timeout a hair before ours
            # fires: that is still the pipeline running out of time.
            if exc.details.get("code") == TIMEOUT and loop.time() >= deadline:
                raise self._timed_out(timeout, request_id) from None
            raise

    async def _run(self, scope: dict[str, Any], ctx: RunContext) -> Any:
        results = scope["steps"]
        result = None
        for step in self._steps:
            try:
                result = await run_step(step, scope, ctx)
            except StepFailure as failure:
                raise MeshError(
                    STEP_FAILED,
                    f"step '{step.id}' failed: {failure.message}",
                    agent=self.name,
                    request_id=ctx.request_id,
                    details={
                        "step": step.id,
                        "code": failure.code,
                        "message": failure.message,
                        **failure.where,
                    },
                ) from None
            results[step.id] = result
        if self._returns is None:
            return result
        try:
            return self._returns.render(scope)
        except EvaluationError as exc:
            raise MeshError(
                HANDLER_ERROR, f"returns: {exc}", agent=self.name, request_id=ctx.request_id
            ) from None

    def _timed_out(self, timeout: float, request_id: str) -> MeshError:
        return MeshError(
            TIMEOUT,
            f"pipeline '{self.name}' did not finish within {seconds_text(timeout)}",
            agent=self.name,
            request_id=request_id,
        )


def compile_pipeline(
    name: str, spec: PipelineSpec, callable_names: set[str],
    capabilities: Mapping[str, int] | None = None, *, durable: bool = False,
) -> tuple[CompiledPipeline | None, list[Problem]]:
    """The compiled pipeline, or None and every problem found (paths relative to the pipeline).

    `capabilities` maps each capability to how many agents (of the file or external) declare it;
    `durable` (the pipeline's own, else defaults.durable) allows wait, sleep and run_key.
    """
    compiler = PipelineCompiler(spec, callable_names, capabilities, durable)
    compiler.name = name
    steps, returns = compiler.compile()
    if compiler.problems:
        return None, compiler.problems
    return CompiledPipeline(name, steps, returns, spec.timeout), []

"""Load-time compilation of the steps that reach the mesh beyond a call: `broadcast`,
`get_state` and `set_state`, and the keys that apply to each kind of step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtime.core.bus import MAX_ANSWERS, state_key_problem
from runtime.core.events import event_type_problem
from runtime.pipeline.bus_steps import (
    DEFAULT_MIN_ANSWERS,
    DEFAULT_WITHIN,
    BroadcastNode,
    EmitNode,
    GetStateNode,
    SetStateNode,
)
from runtime.pipeline.expressions import Expression, Path, Problem, Template, compile_template
from runtime.pipeline.nodes import BusNode
from runtime.pipeline.spec import STEP_KINDS, Step

# Which of the keys that not every step takes each kind of step accepts.
_ACCEPTS = {"call": {"with", "retry"}, "capability": {"with", "retry"},
            "broadcast": {"with", "within", "min_answers", "max_answers"}}
_FIELDS = (("with", "with_"), ("retry", "retry"), ("within", "within"),
           ("min_answers", "min_answers"), ("max_answers", "max_answers"))


class BusStepCompiling:
    """Part of PipelineCompiler (a mixin): what it provides is declared first."""

    capabilities: Mapping[str, int]
    problems: list[Problem]
    name: str  # the pipeline's: the source of the events it emits

    def _problem(self, path: Path, message: str) -> None:
        raise NotImplementedError

    def _check_reads(self, expr: Expression, path: Path, where: Any) -> None:
        raise NotImplementedError

    def _payload(self, step: Step, path: Path, where: Any) -> Template | None:
        raise NotImplementedError

    def _offered(self, capability: str, path: Path) -> int:
        raise NotImplementedError

    def _bus_step(self, step: Step, path: Path, where: Any) -> BusNode:
        if step.broadcast is not None:
            count = self._offered(step.broadcast, (*path, "broadcast"))
            wanted = DEFAULT_MIN_ANSWERS if step.min_answers is None else step.min_answers
            if count and wanted > count:
                self._problem((*path, "min_answers"), f"min_answers is {wanted}, but only "
                              f"{count} agent{'s' if count > 1 else ''} declare"
                              f"{'' if count > 1 else 's'} capability '{step.broadcast}'")
            return BroadcastNode(step.broadcast, self._payload(step, path, where),
                                 step.within or DEFAULT_WITHIN, wanted,
                                 step.max_answers or MAX_ANSWERS)
        if step.set_state is not None:
            key = self._state_key(step.set_state.key, (*path, "set_state", "key"), where)
            value = self._template(step.set_state.value, (*path, "set_state", "value"), where)
            return SetStateNode(key, value)
        if step.emit is not None:
            problem = event_type_problem(step.emit.type)
            if problem is not None:
                self._problem((*path, "emit", "type"), problem)
            data = (None if "data" not in step.emit.model_fields_set
                    else self._template(step.emit.data, (*path, "emit", "data"), where))
            return EmitNode(self.name, step.emit.type, data)
        assert step.get_state is not None
        return GetStateNode(self._state_key(step.get_state, (*path, "get_state"), where))

    def _state_key(self, text: str, path: Path, where: Any) -> Template:
        key = self._template(text, path, where)
        if key.is_constant and (problem := state_key_problem(text)) is not None:
            self._problem(path, problem)
        return key

    def _template(self, value: Any, path: Path, where: Any) -> Template:
        template, problems = compile_template(value, path)
        self.problems.extend(problems)
        for expr_path, expr in template.expressions:
            self._check_reads(expr, expr_path, where)
        return template

    def _misplaced(self, step: Step, path: Path) -> None:
        """Keys given to a kind of step they do not apply to (parallel says so itself)."""
        kind = next(k for k in STEP_KINDS if getattr(step, k) is not None)
        if kind == "parallel":
            return
        for key, field in _FIELDS:
            if key not in _ACCEPTS.get(kind, set()) and getattr(step, field) is not None:
                self._problem((*path, key), f"{key} does not apply to a {kind} step")

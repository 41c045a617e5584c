"""Load-time checks and compilation of one pipeline's steps into frozen step nodes."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from runtime.core.issues import dotted
from runtime.pipeline.compile_bus import BusStepCompiling
from runtime.pipeline.expressions import (
    Expression,
    Path,
    Problem,
    Template,
    compile_expression,
    compile_template,
)
from runtime.pipeline.nodes import BusNode, CallNode, ParallelNode, StepNode
from runtime.pipeline.spec import (
    MAX_ITEMS,
    STEP_ID_PATTERN,
    PipelineSpec,
    Retry,
    Step,
    walk_steps,
)
from runtime.pipeline.wait_steps import WaitStepCompiling

_PLAIN_NAME = re.compile(STEP_ID_PATTERN)
_PLAIN_RULE = "must be letters, digits and _, not starting with a digit"
_MESH_FIELDS = ("name", "request_id")
_ROOTS = ("input", "steps", "mesh")
_ITEM_ROOTS = (*_ROOTS, "item", "index")
_NO_RETRY = Retry()


@dataclass(frozen=True)
class _Where:
    """What an expression at some point of the pipeline may read."""

    visible: frozenset[str]  # step ids that have run by then
    sequence: frozenset[str]  # ids of the step list being compiled
    enclosing: frozenset[str]  # ids of the steps the expression belongs to
    in_item: bool  # inside a for_each body: `item` and `index` are set


class PipelineCompiler(BusStepCompiling, WaitStepCompiling):
    """Compiles one pipeline spec, collecting every problem instead of stopping at the first."""

    def __init__(self, spec: PipelineSpec, callable_names: set[str],
                 capabilities: Mapping[str, int] | None = None, durable: bool = False):
        self.spec = spec
        self.durable = durable
        self.signals: dict[str, Path] = {}
        self.name = ""  # set by compile_pipeline: the source of the events it emits
        self.callable_names = callable_names
        self.capabilities = capabilities or {}  # capability -> how many agents declare it
        self.problems: list[Problem] = []
        self.ids: dict[str, Path] = {}
        self.branch_ids: set[str] = set()

    def compile(self) -> tuple[tuple[StepNode, ...], Template | None]:
        """The top-level step nodes and the `returns` template; see `problems` afterwards."""
        self._collect_ids()
        top = _Where(frozenset(), frozenset(), frozenset(), in_item=False)
        steps = self._sequence(self.spec.steps, ("steps",), top, top_level=True, label="")
        self._run_key(top)
        if self.spec.returns is None:
            return steps, None
        returns, problems = compile_template(self.spec.returns, ("returns",))
        self.problems.extend(problems)
        done = _Where(
            frozenset(s.id for s in self.spec.steps if s.id), frozenset(), frozenset(), False
        )
        for path, expr in returns.expressions:
            self._check_reads(expr, path, done)
        return steps, returns

    def _problem(self, path: Path, message: str) -> None:
        self.problems.append((path, message))

    def _run_key(self, top: _Where) -> Template | None:
        """`run_key:` is an expression over the input alone, of a durable pipeline."""
        if self.spec.run_key is None:
            return None
        if not self.durable:
            self._problem(("run_key",), "run_key needs a durable pipeline: add `durable: true` "
                          "to the pipeline (or to defaults:)")
        if "${{" not in self.spec.run_key:
            self._problem(("run_key",), "run_key is an expression over the input, like "
                          "${{ input.order_id }}; a constant would allow one run ever")
            return None
        key, problems = compile_template(self.spec.run_key, ("run_key",))
        self.problems.extend(problems)
        for expr_path, expr in key.expressions:
            self._check_reads(expr, expr_path, top)
        return key

    def _collect_ids(self) -> None:
        for path, step in walk_steps(self.spec.steps):
            if step.id is None:
                continue
            if not _PLAIN_NAME.match(step.id):
                self._problem((*path, "id"), f"step id {step.id!r} {_PLAIN_RULE}")
            if step.id in self.ids:
                first = dotted(self.ids[step.id])
                self._problem((*path, "id"), f"duplicate step id '{step.id}' (first at {first})")
                continue
            self.ids[step.id] = path
            if "parallel" in path:
                self.branch_ids.add(step.id)

    def _sequence(
        self, steps: list[Step], path: Path, where: _Where, *, top_level: bool = False,
        label: str,
    ) -> tuple[StepNode, ...]:
        """The nodes of a step list; `label` is the run path of the list (`analysis.b`), or
        empty at the top."""
        own = frozenset(s.id for s in steps if s.id)
        visible = set(where.visible)
        nodes = []
        for index, step in enumerate(steps):
            if top_level and step.id is None:
                self._problem((*path, index), "a top-level step needs an id")
            here = dataclasses.replace(where, visible=frozenset(visible), sequence=own)
            name = step.id or str(index)
            nodes.append(self._step(step, (*path, index), here,
                                    f"{label}.{name}" if label else name))
            if step.id:
                visible.add(step.id)
        return tuple(nodes)

    def _step(self, step: Step, path: Path, where: _Where, label: str) -> StepNode:
        if step.id:
            where = dataclasses.replace(where, enclosing=where.enclosing | {step.id})
        # `for_each:` with nothing after it is YAML null: say so rather than run once.
        given = step.model_fields_set
        when_text = "" if step.when is None and "when" in given else step.when
        each_text = "" if step.for_each is None and "for_each" in given else step.for_each
        when = self._bare(when_text, "when", "input.lang != 'en'", path, where)
        for_each = self._bare(each_text, "for_each", "input.sections", path, where)
        for key in ("max_concurrency", "max_items"):
            if getattr(step, key) is not None and each_text is None:
                self._problem((*path, key), f"{key} applies to for_each steps")
        if each_text is not None:
            where = dataclasses.replace(where, in_item=True)
        self._misplaced(step, path)
        body: CallNode | ParallelNode | BusNode
        if step.call is not None:
            body = self._call(step, step.call, path, where)
        elif step.capability is not None:
            body = self._call(step, step.capability, path, where, capability=True)
        elif step.parallel is not None:
            body = self._parallel(step, path, where, label)
        elif step.wait is not None or step.sleep is not None:
            body = self._wait_step(step, path)
        else:
            body = self._bus_step(step, path, where)
        fallback = step.on_error.value if step.on_error is not None else None
        return StepNode(
            step.id, when, for_each, step.max_concurrency, step.max_items or MAX_ITEMS, body,
            step.on_error is not None, fallback, label,
        )

    def _bare(
        self, text: str | None, key: str, example: str, path: Path, where: _Where
    ) -> Expression | None:
        if text is None:
            return None
        if not text.strip():
            self._problem((*path, key), f"{key} needs an expression, like {example}")
            return None
        expr, problems = compile_expression(text, (*path, key))
        self.problems.extend(problems)
        if expr is not None:
            self._check_reads(expr, (*path, key), where)
        return expr

    def _call(
        self, step: Step, agent: str, path: Path, where: _Where, capability: bool = False
    ) -> CallNode:
        if capability:
            self._offered(agent, (*path, "capability"))
        elif agent not in self.callable_names:
            hint = _did_you_mean(agent, self.callable_names)
            self._problem((*path, "call"), f"unknown agent or pipeline '{agent}'{hint}")
        payload = self._payload(step, path, where)
        retry = step.retry or _NO_RETRY
        return CallNode(
            agent, payload, step.timeout, retry.attempts, retry.backoff, retry.max_backoff,
            capability,
        )

    def _payload(self, step: Step, path: Path, where: _Where) -> Template | None:
        if step.with_ is None:
            return None
        payload, problems = compile_template(step.with_, (*path, "with"))
        self.problems.extend(problems)
        for expr_path, expr in payload.expressions:
            self._check_reads(expr, expr_path, where)
        return payload

    def _offered(self, capability: str, path: Path) -> int:
        """How many agents declare `capability`; a problem when none does."""
        count = self.capabilities.get(capability, 0)
        if not count:
            hint = _did_you_mean(capability, self.capabilities)
            self._problem(path, f"no agent of this file or of external: declares capability "
                          f"'{capability}'{hint}")
        return count

    def _parallel(self, step: Step, path: Path, where: _Where, label: str) -> ParallelNode:
        for key, present in (("with", step.with_ is not None), ("retry", step.retry is not None),
                             ("within", step.within is not None),
                             ("min_answers", step.min_answers is not None),
                             ("max_answers", step.max_answers is not None)):
            if present:
                self._problem(
                    (*path, key), f"{key} applies to call steps; set it on the branches' steps"
                )
        branches = step.parallel or {}
        if not branches:
            self._problem((*path, "parallel"), "parallel needs at least one branch")
        compiled = []
        for name, body in branches.items():
            branch_path = (*path, "parallel", name)
            if not _PLAIN_NAME.match(name):
                self._problem(branch_path, f"branch name {name!r} {_PLAIN_RULE}")
            if isinstance(body, list):
                if not body:
                    self._problem(branch_path, "a branch needs at least one step")
                nodes = self._sequence(body, branch_path, where, label=f"{label}.{name}")
            else:
                nodes = (self._step(body, branch_path, where, f"{label}.{name}"),)
            compiled.append((name, nodes))
        return ParallelNode(tuple(compiled), step.timeout)

    def _check_reads(self, expr: Expression, path: Path, where: _Where) -> None:
        """Every name the expression reads must exist at this point of the pipeline."""
        roots = _ITEM_ROOTS if where.in_item else _ROOTS
        for name, field in sorted(expr.roots(), key=lambda r: (r[0], r[1] or "")):
            said = f"expression {expr.text!r} reads"
            if name == "steps" and field is not None:
                problem = self._step_problem(field, where)
                if problem:
                    self._problem(path, f"{said} steps.{field}, {problem}")
            elif name == "mesh" and field is not None and field not in _MESH_FIELDS:
                self._problem(path, f"{said} mesh.{field}, but mesh has only name and request_id")
            elif name in ("item", "index") and not where.in_item:
                self._problem(path, f"{said} '{name}', which is set only inside for_each")
            elif name not in roots:
                hint = _did_you_mean(name, roots)
                self._problem(
                    path, f"{said} '{name}', which is not in scope ({', '.join(roots)}){hint}"
                )

    def _step_problem(self, ref: str, where: _Where) -> str | None:
        if ref in where.visible:
            return None
        if ref in where.enclosing:
            return "its own step's result"
        if ref not in self.ids:
            return f"but no step has id '{ref}'{_did_you_mean(ref, self.ids)}"
        if ref in self.branch_ids and ref not in where.sequence:
            return "which runs inside a parallel branch (only later steps of that branch see it)"
        return "which has not run yet here (only earlier steps can be read)"


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""

"""Pipelines drawn as a Mermaid flowchart (what `mesh-runtime graph` prints).

One `flowchart TD` holds a `subgraph` per pipeline, so the output is a single diagram that
GitHub renders in a ```mermaid block. Node ids are counters in document order, so the same
file always gives the same text.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.core.triggerspec import Trigger
from runtime.pipeline.spec import PipelineSpec, Step
from runtime.pipeline.steps import seconds_text

Exit = tuple[str, str | None, bool]  # node id, edge label, dotted edge

_ESCAPES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;"}


def to_mermaid(pipelines: dict[str, PipelineSpec], only: str | None = None,
               triggered: dict[str, list[Trigger]] | None = None) -> str:
    """Mermaid flowchart text for every pipeline, or for the one named `only`; agents with
    triggers (`triggered`: agent name -> its triggers) are drawn too, as their triggers
    flowing into them."""
    triggered = triggered or {}
    if only is not None:
        if only not in pipelines and only not in triggered:
            names = ", ".join(sorted(pipelines)) or "(none)"
            raise ValueError(f"no pipeline named '{only}'; pipelines: {names}")
        pipelines = {only: pipelines[only]} if only in pipelines else {}
        triggered = {only: triggered[only]} if only in triggered else {}
    lines = ["flowchart TD"]
    if not pipelines and not triggered:
        lines.append("  %% no pipelines")
    for number, (name, spec) in enumerate(pipelines.items()):
        lines.extend(_Drawing(f"p{number}").pipeline(name, spec))
    for number, (name, triggers) in enumerate(triggered.items()):
        lines.extend(_Drawing(f"a{number}").agent(name, triggers))
    return "\n".join(lines) + "\n"


def escape(text: str) -> str:
    """Text safe inside a quoted Mermaid label (`"` becomes `#quot;`, and so on)."""
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


class _Drawing:
    """Nodes and edges of one pipeline, as Mermaid lines."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.count = 0
        self.lines: list[str] = []

    def pipeline(self, name: str, spec: PipelineSpec) -> list[str]:
        self.lines.append(f'  subgraph {self.prefix} ["{escape(name)}"]')
        start = self._node('(["input"])')
        for trigger in spec.triggers:  # where runs come from besides calls
            source = self._node(_shape("[/", "/]", trigger.describe()))
            self._connect([(source, None, True)], start)
        exits = self._sequence(spec.steps, [(start, None, False)])
        if isinstance(spec.returns, dict) and spec.returns:
            done = self._node(_shape("([", "])", "returns: " + ", ".join(map(str, spec.returns))))
        else:
            done = self._node('(["output"])')
        self._connect(exits, done)
        self.lines.append("  end")
        return self.lines

    def agent(self, name: str, triggers: list[Trigger]) -> list[str]:
        agent = self._node(_shape("[", "]", f"agent {name}"))
        for trigger in triggers:
            source = self._node(_shape("[/", "/]", trigger.describe()))
            self._connect([(source, None, True)], agent)
        return self.lines

    def _node(self, shape: str) -> str:
        self.count += 1
        node = f"{self.prefix}_{self.count}"
        self.lines.append(f"    {node}{shape}")
        return node

    def _connect(self, exits: list[Exit], target: str) -> None:
        for source, label, dotted in exits:
            arrow = "-.->" if dotted else "-->"
            text = f'|"{escape(label)}"|' if label else ""
            self.lines.append(f"    {source} {arrow}{text} {target}")

    def _sequence(self, steps: list[Step], exits: list[Exit]) -> list[Exit]:
        for step in steps:
            exits = self._step(step, step.id or "", exits)
        return exits

    def _step(self, step: Step, title: str, exits: list[Exit]) -> list[Exit]:
        skipped: list[Exit] = []
        if step.when is not None:
            decision = self._node(_shape("{", "}", f"when: {step.when}"))
            self._connect(exits, decision)
            exits, skipped = [(decision, "yes", False)], [(decision, "no", True)]
        lines = [title] if title else []
        action = _action(step)
        lines.append(action or "parallel")
        if step.for_each is not None:
            limit = f" (max {step.max_concurrency})" if step.max_concurrency else ""
            lines.append(f"for each {step.for_each}{limit}")
        notes = _annotations(step)
        if notes:
            lines.append(notes)
        if action is not None:
            brackets = ("[[", "]]") if step.for_each is not None else ("[", "]")
            node = self._node(_shape(*brackets, *lines))
            self._connect(exits, node)
            return [(node, None, False), *skipped]
        fork = self._node(_shape("{{", "}}", *lines))
        self._connect(exits, fork)
        joined: list[Exit] = []
        for branch, body in (step.parallel or {}).items():
            start: list[Exit] = [(fork, branch, False)]
            if isinstance(body, list):
                joined.extend(self._sequence(body, start))
            else:
                joined.extend(self._step(body, body.id or branch, start))
        return [*joined, *skipped]


def _action(step: Step) -> str | None:
    """What a step does, in a few words; None for a parallel step."""
    if step.call is not None:
        return f"→ {step.call}"
    if step.capability is not None:
        return f"→ capability {step.capability}"
    if step.broadcast is not None:
        return f"broadcast {step.broadcast}"
    if step.get_state is not None:
        return f"get_state {step.get_state}"
    if step.set_state is not None:
        return f"set_state {step.set_state.key}"
    if step.wait is not None:
        return f"wait for signal {step.wait.signal}"
    if step.sleep is not None:
        return f"sleep {step.sleep:g}s"
    if step.emit is not None:
        return f"emit {step.emit.type}"
    return None


def _shape(opening: str, closing: str, *lines: str) -> str:
    return f'{opening}"{"<br/>".join(escape(line) for line in lines)}"{closing}'


def _annotations(step: Step) -> str:
    """retry, timeout and on_error in a few words: `retry 3×, timeout 2s, on error: null`."""
    notes = []
    if step.retry is not None and step.retry.attempts > 1:
        notes.append(f"retry {step.retry.attempts}×")
    if step.timeout is not None:
        notes.append(f"timeout {seconds_text(step.timeout)}")
    if step.on_error is not None:
        notes.append(f"on error: {_short(step.on_error.value)}")
    return ", ".join(notes)


def _short(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return text if len(text) <= 30 else text[:29] + "…"

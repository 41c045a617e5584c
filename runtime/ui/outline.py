"""A pipeline's steps as a tree the page draws (the same reading as `mesh-runtime graph`).

It reads the definition a pipeline's registry card carries (`x-agentmesh.pipeline`), as
plain JSON: any process may write a card, and a newer mesh-runtime may know step kinds
this one does not, so nothing here trusts a shape; it is cut at a depth and a size.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 12
MAX_NODES = 400
TEXT_LIMIT = 120
# What a step does, by the key that says it, in the order `graph` tries them.
ACTIONS = (("call", "→ {}"), ("capability", "→ capability {}"), ("broadcast", "broadcast {}"),
           ("get_state", "get_state {}"), ("set_state", "set_state {}"), ("wait", "wait {}"),
           ("sleep", "sleep {}"), ("emit", "emit {}"))


class _Budget:
    def __init__(self) -> None:
        self.nodes = 0


def outline(definition: Any, triggers: Any = None) -> dict[str, Any] | None:
    """`{"steps": [node...], "returns": text}`, or None when there is nothing to draw.

    A node: `{"id", "action", "when", "for_each", "notes", "branches": [{"name",
    "steps"}]}` (every value text; `branches` only for a parallel step)."""
    if not isinstance(definition, dict) or not isinstance(definition.get("steps"), list):
        return None
    budget = _Budget()
    returns = definition.get("returns")
    return {"steps": _sequence(definition["steps"], 0, budget),
            "returns": "" if returns is None else _short(returns),
            "triggers": trigger_lines(triggers),
            "cut": budget.nodes >= MAX_NODES}


def trigger_lines(triggers: Any) -> list[str]:
    """Each trigger in a few words: `subject orders.created`, `schedule {"every":"30s"}`
    (the catalog entry's text as it is; a mapping as its first key and value)."""
    lines = []
    for trigger in triggers[:20] if isinstance(triggers, list) else ():
        if isinstance(trigger, str) and trigger:
            lines.append(_short(trigger, quote=False))
        elif isinstance(trigger, dict) and trigger:
            kind, value = next(iter(trigger.items()))
            lines.append(f"{_short(kind, quote=False)} {_short(value, quote=False)}")
    return lines


def _sequence(steps: list[Any], depth: int, budget: _Budget) -> list[dict[str, Any]]:
    nodes = []
    for step in steps:
        if budget.nodes >= MAX_NODES or depth > MAX_DEPTH:
            break
        if isinstance(step, dict):
            nodes.append(_node(step, depth, budget))
    return nodes


def _node(step: dict[str, Any], depth: int, budget: _Budget) -> dict[str, Any]:
    budget.nodes += 1
    node: dict[str, Any] = {"id": _short(step.get("id") or "", quote=False),
                            "action": _action(step)}
    if "when" in step:
        node["when"] = _short(step["when"], quote=False)
    if "for_each" in step:
        limit = step.get("max_concurrency")
        node["for_each"] = _short(step["for_each"], quote=False) + (
            f" (max {_short(limit)})" if limit else "")
    notes = _notes(step)
    if notes:
        node["notes"] = notes
    parallel = step.get("parallel")
    if isinstance(parallel, dict):
        node["action"] = "parallel"
        node["branches"] = [
            {"name": _short(name, quote=False),
             "steps": _sequence(body if isinstance(body, list) else [body], depth + 1, budget)}
            for name, body in list(parallel.items())[:20]]
    return node


def _action(step: dict[str, Any]) -> str:
    for key, form in ACTIONS:
        if key in step and step[key] is not None:
            value = step[key]
            if isinstance(value, dict):  # set_state: {key, value}; wait: {signal, timeout}
                value = value.get("key") or value.get("signal") or value.get("type") or ""
            return form.format(_short(value, quote=False)).strip()
    return "step"


def _notes(step: dict[str, Any]) -> str:
    notes = []
    retry = step.get("retry")
    if isinstance(retry, dict) and isinstance(retry.get("attempts"), int) and retry["attempts"] > 1:
        notes.append(f"retry {retry['attempts']}×")
    if step.get("timeout") is not None:
        notes.append(f"timeout {_short(step['timeout'])}s" if isinstance(
            step["timeout"], int | float) else f"timeout {_short(step['timeout'])}")
    on_error = step.get("on_error")
    if isinstance(on_error, dict):
        notes.append(f"on error: {_short(on_error.get('value'))}")
    return ", ".join(notes)


def _short(value: Any, quote: bool = True) -> str:
    if isinstance(value, str) and not quote:
        text = value
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT - 1] + "…"

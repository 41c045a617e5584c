"""Checks across pipelines (call cycles) and against agents' schemas (constant `with:` values)."""

from __future__ import annotations

import re
import reprlib
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from runtime.pipeline.expressions import Path, Problem, compile_template
from runtime.pipeline.spec import PipelineSpec, walk_steps

_SHORT = reprlib.Repr()
_SHORT.maxstring = 40
_SHORT.maxother = 40


def find_cycles(pipelines: dict[str, PipelineSpec]) -> list[tuple[str, Path, str]]:
    """One (pipeline, path of the offending `call`, message) per group of pipelines in a cycle.

    Each cycle is reported once, at the first (by name) pipeline in it, as the shortest loop
    through that pipeline: "pipelines call each other in a cycle: a -> b -> a".
    """
    edges = {name: list(_pipeline_calls(spec, pipelines)) for name, spec in pipelines.items()}
    found = []
    for group in _strongly_connected(edges):
        start = min(group)
        if len(group) == 1 and not any(target == start for target, _ in edges[start]):
            continue
        loop = _shortest_loop(start, group, edges)
        path = next(p for target, p in edges[start] if target == loop[1])
        if len(loop) == 2:
            message = f"pipeline '{start}' calls itself"
        else:
            message = "pipelines call each other in a cycle: " + " -> ".join(loop)
        found.append((start, path, message))
    return sorted(found, key=lambda f: f[0])


def _pipeline_calls(
    spec: PipelineSpec, pipelines: dict[str, PipelineSpec]
) -> Iterator[tuple[str, Path]]:
    for path, step in walk_steps(spec.steps):
        if step.call in pipelines:
            yield step.call, (*path, "call")


def _strongly_connected(edges: dict[str, list[tuple[str, Path]]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative so deep call chains cannot hit the recursion limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            for target, _ in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(edges[target])))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    groups.append(group)
    return groups


def _shortest_loop(
    start: str, group: set[str], edges: dict[str, list[tuple[str, Path]]]
) -> list[str]:
    """start -> ... -> start, by breadth-first search inside the group."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target, _ in edges[node]:
            if target == start:
                loop = [start]
                while node != start:
                    loop.insert(1, node)
                    node = came_from[node]
                return [*loop, start]
            if target in group and target not in came_from:
                came_from[target] = node
                queue.append(target)
    raise AssertionError("a strongly connected group always has a loop")


def check_constants(
    name: str, spec: PipelineSpec, input_schema_of: Callable[[str], dict[str, Any] | None]
) -> list[Problem]:
    """Warnings for `with:` keys and constant values that the callee's input schema rejects."""
    warnings: list[Problem] = []
    for path, step in walk_steps(spec.steps):
        if step.call is None or step.with_ is None:
            continue
        schema = input_schema_of(step.call)
        if not isinstance(schema, dict):
            continue
        try:
            warnings.extend(_check_with(step.call, step.with_, schema, (*path, "with")))
        except Exception:
            # Only warnings: a broken schema or $ref is reported where it is declared.
            continue
    return warnings


def _check_with(
    agent: str, given: dict[str, Any], schema: dict[str, Any], path: Path
) -> Iterator[Problem]:
    # Imported here: only files with `with:` constants pay jsonschema's import at start-up.
    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import best_match
    from referencing import Registry

    # An empty registry: jsonschema's default one fetches remote `$ref`s over the network.
    cls = validators.validator_for(schema, default=Draft202012Validator)
    validator = cls(schema, registry=Registry())
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    patterns = schema.get("patternProperties")
    patterns = list(patterns) if isinstance(patterns, dict) else []
    closed = schema.get("additionalProperties") is False
    for key, value in given.items():
        if key not in properties:
            if closed and not any(re.search(p, key) for p in patterns):
                yield (
                    (*path, key),
                    f"{agent}'s input schema has no property '{key}' and allows no others",
                )
            continue
        if not compile_template(value)[0].is_constant:
            continue  # only constants can be judged before a run
        error = best_match(validator.evolve(schema=properties[key]).iter_errors(value))
        if error is not None:
            yield (
                (*path, key),
                f"constant {_SHORT.repr(value)} for {key} does not match {agent}'s input schema: "
                f"{error.message}",
            )
    required = schema.get("required")
    for key in required if isinstance(required, list) else []:
        # A default may fill the key in, so only a required key without one is a sure failure.
        if key not in given and "default" not in (properties.get(key) or {}):
            yield path, f"{agent}'s input schema requires '{key}', which with: does not set"

"""Load-time checks that a pipeline's steps fit together, from the schemas they declare.

- An expression that reads a parallel branch, a step's field or an input field that cannot
  exist (the schema forbids other properties, or the value is a list) is an error: it
  would read null on every run.
- A `with:` value that provably cannot satisfy the callee's input schema (its type, or its
  possible values, are all refused) is an error; one that merely might not is a warning.

Shapes over-approximate (see runtime.pipeline.shapes), so "cannot" is always proven.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterator
from typing import Any

from runtime.pipeline.expressions import Expression, Path, Problem, compile_expression
from runtime.pipeline.shapes import (
    ANYTHING,
    NULL,
    Const,
    ListOf,
    Record,
    Shape,
    field_names,
    of_schema,
    union,
)
from runtime.pipeline.spec import PipelineSpec, Step, walk_steps

SchemasOf = Callable[[str], tuple[Any, Any] | None]
"""A callee's (input schema, output schema) documents, either None when not declared."""

_OPEN, _CLOSE = "${{", "}}"


def check_fit(spec: PipelineSpec, input_schema: Any,
              schemas_of: SchemasOf) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings), paths relative to the pipeline."""
    results: dict[str, Shape] = {}
    for step in spec.steps:
        _result(step, results, schemas_of)
    checker = _Checker(of_schema(input_schema, filled=True), results)
    for path, step in walk_steps(spec.steps):
        for key in ("when", "for_each"):
            text = getattr(step, key)
            if isinstance(text, str) and text.strip():
                checker.reads(text, (*path, key))
        if step.with_ is not None:
            for where, text in _strings(step.with_, (*path, "with")):
                for inner in _expressions(text):
                    checker.reads(inner, where)
            if step.call is not None and (schemas := schemas_of(step.call)) is not None:
                checker.payload(step.call, step.with_, of_schema(schemas[0]), (*path, "with"))
    for where, text in _strings(spec.returns, ("returns",)):
        for inner in _expressions(text):
            checker.reads(inner, where)
    return checker.errors, checker.warnings


def _result(step: Step, results: dict[str, Shape], schemas_of: SchemasOf) -> Shape:
    """The shape of a step's result, noting each step id's on the way."""
    if step.call is not None:
        schemas = schemas_of(step.call)
        shape = of_schema(schemas[1]) if schemas is not None else ANYTHING
    elif step.parallel is not None:
        fields = []
        for branch, body in step.parallel.items():
            steps = body if isinstance(body, list) else [body]
            shapes = [_result(s, results, schemas_of) for s in steps]
            fields.append((branch, shapes[-1] if shapes else NULL))
        shape = Shape((Record(tuple(fields), f"step '{step.id}'"),))
    else:
        shape = ANYTHING  # capability, broadcast and state steps: not known at load
    if step.for_each is not None:
        shape = Shape((ListOf(shape),))
    if step.when is not None:
        shape = union([shape, NULL])
    if step.on_error is not None:
        shape = union([shape, Shape((Const(step.on_error.value),))])
    if step.id is not None:
        results[step.id] = shape
    return shape


class _Checker:
    def __init__(self, input_shape: Shape, results: dict[str, Shape]):
        self.input = input_shape
        self.results = results
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def reads(self, text: str, path: Path) -> None:
        expr, _ = compile_expression(text.strip())
        if expr is None:
            return  # the compiler reports it
        for chain in sorted(expr.chains()):
            self._walk(expr, chain, path, report=True)

    def _walk(self, expr: Expression, chain: tuple[str, ...], path: Path,
              report: bool = False) -> Shape | None:
        """The shape `chain` reads; None (and an error, if `report`) when it cannot exist."""
        if chain[0] == "input":
            shape, rest, prefix = self.input, chain[1:], "input"
        elif chain[0] == "steps" and len(chain) > 1 and chain[1] in self.results:
            shape, rest, prefix = self.results[chain[1]], chain[2:], f"steps.{chain[1]}"
        else:
            return ANYTHING
        for name in rest:
            found, there = shape.field(name)
            if not there:
                if report:
                    self.errors.append((path, _cannot(expr.text, prefix, name, shape)))
                return None
            shape, prefix = found, f"{prefix}.{name}"
        return shape

    def payload(self, callee: str, given: dict[str, Any], target: Shape, path: Path) -> None:
        for key, value in given.items():
            wanted = _declared(target, key)
            if wanted is None:
                continue
            source = self._value(value, (*path, key))
            if source is None:
                continue
            self._compare(source, wanted, f"{callee}'s input", key, value, (*path, key))

    def _value(self, value: Any, path: Path) -> Shape | None:
        """What a `with:` value can render to; None for constants (checked elsewhere)."""
        if isinstance(value, dict | list):  # a template builds the same kind of value
            has_expressions = next(_strings(value, ()), None) is not None
            return _typed("object" if isinstance(value, dict) else "array") \
                if has_expressions else None
        if not isinstance(value, str) or _OPEN not in value:
            return None
        inner = _expressions(value)
        stripped = value.strip()
        whole = len(inner) == 1 and stripped.startswith(_OPEN) and stripped.endswith(_CLOSE)
        if not whole:
            return _typed("string")  # text around an expression always makes a string
        expr, _ = compile_expression(inner[0].strip())
        if expr is None:
            return None
        chain = tuple(expr.text.split("."))
        if expr.chains() != {chain} or chain[0] not in ("input", "steps"):
            return None  # computed, or `item`: its type is not known here
        return self._walk(expr, chain, path)

    def _compare(self, source: Shape, wanted: Shape, what: str, key: str, value: Any,
                 path: Path) -> None:
        given, allowed = source.types(), wanted.types()
        if given is None or allowed is None:
            return
        if "number" in allowed:
            allowed = allowed | {"integer"}
        shown = value.strip() if isinstance(value, str) else "this value"
        if not given & allowed:
            self.errors.append((path, f"{shown} gives {_names(given)}, but {what} takes "
                                      f"{_names(allowed)} for '{key}': it can never fit"))
        elif given - allowed:
            self.warnings.append((path, f"{shown} may give {_names(given - allowed)}, but "
                                        f"{what} takes {_names(allowed)} for '{key}'"))
        else:
            self._compare_values(source, wanted, shown, what, key, path)

    def _compare_values(self, source: Shape, wanted: Shape, shown: str, what: str, key: str,
                        path: Path) -> None:
        given, allowed = source.values(), wanted.values()
        if given is None or allowed is None:
            return
        refused = [v for v in given if not any(_same(v, a) for a in allowed)]
        if len(refused) == len(given):
            self.errors.append((path, f"{shown} gives one of {_listed(given)}, but {what} takes "
                                      f"only {_listed(allowed)} for '{key}': it can never fit"))
        elif refused:
            self.warnings.append((path, f"{shown} may give {_listed(refused)}, which {what} does "
                                        f"not take for '{key}' (it takes {_listed(allowed)})"))


def _declared(target: Shape, key: str) -> Shape | None:
    """The schema a callee's input declares for `key`, or None when it says nothing."""
    found = []
    for alternative in target.alternatives or ():
        schema = getattr(alternative, "schema", None)
        properties = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(properties, dict) or key not in properties:
            return None
        found.append(of_schema(properties[key], getattr(alternative, "root", None)))
    return union(found) if found else None


def _cannot(text: str, prefix: str, name: str, shape: Shape) -> str:
    said = f"expression {text!r} reads {prefix}.{name}"
    kinds = [a for a in shape.alternatives or () if a != Const(None)]
    names = field_names(shape)
    hint = difflib.get_close_matches(name, names, n=1)
    mean = f"; did you mean '{hint[0]}'?" if hint else ""
    if kinds and all(isinstance(a, Record) for a in kinds):
        what = kinds[0].what if isinstance(kinds[0], Record) else prefix
        return (f"{said}, but the parallel {what} has no branch '{name}' (its branches: "
                f"{', '.join(names)}){mean}")
    if kinds and all(isinstance(a, ListOf) for a in kinds):
        return (f"{said}, but {prefix} is a list (for_each gives one result per item): read "
                f"{prefix}[*].{name} for every item's, or {prefix}[0].{name}")
    return (f"{said}, which cannot exist: the schema of {prefix} has no property '{name}' "
            f"and allows no others{mean}")


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 equals 1.0, but true is not 1."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _listed(values: list[Any]) -> str:
    return ", ".join(json.dumps(v, default=str) for v in values[:10]) + (
        ", ..." if len(values) > 10 else "")


def _typed(kind: str) -> Shape:
    return of_schema({"type": kind})


def _names(types: frozenset[str]) -> str:
    order = sorted(types - {"integer"} if "number" in types else types)
    return " or ".join(order)


def _strings(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str) and _OPEN in value:
        yield path, value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _strings(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _strings(inner, (*path, index))


def _expressions(text: str) -> list[str]:
    found = []
    start = text.find(_OPEN)
    while start != -1:
        end = text.find(_CLOSE, start + len(_OPEN))
        if end == -1:
            break
        found.append(text[start + len(_OPEN):end])
        start = text.find(_OPEN, end + len(_CLOSE))
    return found


__all__ = ["check_fit"]

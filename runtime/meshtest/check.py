"""What a test case expects against what the call gave: a list of differences, empty on a pass."""

from __future__ import annotations

import json
from typing import Any

from runtime.core.protocol import MeshError
from runtime.meshtest.testfile import Case
from runtime.pipeline.expressions import EvaluationError, compile_expression


def differences(case: Case, output: Any, error: MeshError | None) -> list[str]:
    """Each way the result misses `case.expect`, in the words a failing case prints."""
    expect = case.expect
    wants_output = "output" in expect.model_fields_set
    found: list[str] = []
    if expect.error is not None:
        if error is None:
            found.append(f"expected error{_code(expect.error.code)}, got output {_show(output)}")
        else:
            for key, wanted in (("code", expect.error.code), ("message", expect.error.message)):
                got = getattr(error, key)
                if wanted is not None and got != wanted:
                    found.append(f"error.{key}: expected {_show(wanted)}, got {_show(got)}")
    elif error is not None:
        found.append(f"expected output, got error {error.code}: {error.message}"
                     + (f" {_show(error.details)}" if error.details else ""))
    elif wants_output:
        found.extend(_subset("output", expect.output, output))
    scope = {"input": case.input, "output": output,
             "error": error.to_dict() if error is not None else None}
    for text in expect.asserts:
        expression, _ = compile_expression(text)  # it compiled when the file was loaded
        assert expression is not None
        try:
            if not expression.truthy(scope):
                found.append(f"assert {text}: got {_show(expression.render(scope))}")
        except EvaluationError as exc:
            found.append(f"assert {text}: {exc}")
    return found


def _subset(where: str, wanted: Any, got: Any) -> list[str]:
    """A mapping's listed keys must be there and equal; anything else must equal as a whole."""
    if not isinstance(wanted, dict) or not isinstance(got, dict):
        return [] if _equal(wanted, got) else [f"{where}: expected {_show(wanted)}, got {_show(got)}"]
    found = []
    for key, value in wanted.items():
        if key not in got:
            found.append(f"{where}.{key}: missing (expected {_show(value)})")
        elif not _equal(value, got[key]):
            found.append(f"{where}.{key}: expected {_show(value)}, got {_show(got[key])}")
    return found


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0 as in JSON, but True is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _code(code: str | None) -> str:
    return f" {code}" if code else ""


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 300 else text[:297] + "..."

"""JMESPath expressions and `${{ }}` templates, compiled once at load time and only run later.

Rendering rules:
- A string that is exactly one `${{ EXPR }}` (whitespace around it allowed) becomes the
  expression's value, with its JSON type kept (object, list, number, bool, null).
- A string with text around `${{ EXPR }}` becomes a string: string values go in as they are,
  null as the empty string, anything else as compact JSON (`[1,2]`, `true`, `{"a":1}`).
- Dicts and lists are templates item by item (keys are never templated); other values and
  strings without `${{` are constants. There is no escape for a literal `${{`.
- A template without any expression renders to the very object it was compiled from, without
  copying: callers must not mutate what `render` returns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

import jmespath
from jmespath import exceptions as jp_errors
from jmespath.parser import ParsedResult
from jmespath.visitor import TreeInterpreter

from runtime.pipeline.expressions_ast import (
    chain_reader,
    check_functions,
    field_chain,
    root_chains,
    root_references,
)

Path = tuple[str | int, ...]
Problem = tuple[Path, str]

# TreeInterpreter keeps no per-search state, so one instance serves every render and saves
# building one per search as ParsedResult.search does.
_INTERPRETER = TreeInterpreter()
_OPEN, _CLOSE = "${{", "}}"


class EvaluationError(ValueError):
    """An expression that compiled but failed on this run's data (e.g. a function's arg type)."""


class Expression:
    """One compiled JMESPath expression; `render(scope)` gives its value.

    `render` is chosen once: a plain field chain (`input.text`, `steps.a.b`, `item`), by far the
    most common expression, is read with dict lookups instead of going through the interpreter.
    """

    __slots__ = ("_ast", "render", "text")

    def __init__(self, text: str, parsed: ParsedResult):
        self.text = text
        self._ast = parsed.parsed
        fields = field_chain(_node(parsed))
        self.render: Callable[[dict[str, Any]], Any] = (
            self._interpret if fields is None else chain_reader(fields)
        )

    def _interpret(self, scope: dict[str, Any]) -> Any:
        try:
            return _INTERPRETER.visit(self._ast, scope)
        except jp_errors.JMESPathError as exc:
            raise EvaluationError(f"expression {self.text!r} failed: {exc}") from None

    def truthy(self, scope: dict[str, Any]) -> bool:
        """JMESPath truthiness: false, null, '', [] and {} are false; 0 is true."""
        value = self.render(scope)
        return not (value is None or value is False or value in ("", [], {}))

    def chains(self) -> set[tuple[str, ...]]:
        """The field chains the expression reads from the scope root (see root_chains)."""
        return root_chains(cast("dict[str, Any]", self._ast))

    def roots(self) -> set[tuple[str, str | None]]:
        """Names the expression reads from the scope root, as (name, first field or None)."""
        return root_references(cast("dict[str, Any]", self._ast))


class Template:
    """A compiled template: `render(scope)` builds the value (raises EvaluationError).

    `render` is the precomputed function itself, not a method around it: one call per use.
    `expressions` lists each expression with its path, for load-time checks.
    """

    __slots__ = ("expressions", "is_constant", "render")

    def __init__(
        self, render: Callable[[dict[str, Any]], Any], exprs: tuple[tuple[Path, Expression], ...]
    ):
        self.render = render
        self.expressions = exprs
        self.is_constant = not exprs


def compile_expression(text: str, path: Path = ()) -> tuple[Expression | None, list[Problem]]:
    """A bare JMESPath expression (as in `when:`), or None with the problems found at `path`."""
    if not text.strip():
        return None, [(path, "empty expression")]
    try:
        parsed = jmespath.compile(text)
    except jp_errors.JMESPathError as exc:
        return None, [(path, f"invalid expression {text!r}: {_describe(exc)}")]
    except RecursionError:  # jmespath parses by recursion: thousands of `(` exhaust it
        shown = text if len(text) <= 60 else f"{text[:57]}..."
        return None, [(path, f"invalid expression {shown!r}: nested too deeply")]
    problems = [
        (path, f"invalid expression {text!r}: {msg}") for msg in check_functions(_node(parsed))
    ]
    if problems:
        return None, problems
    return Expression(text, parsed), []


def compile_template(value: Any, path: Path = ()) -> tuple[Template, list[Problem]]:
    """A template for `value`, plus problems with their paths (under `path`)."""
    problems: list[Problem] = []
    exprs: list[tuple[Path, Expression]] = []
    render = _build(value, path, problems, exprs)
    return Template(render, tuple(exprs)), problems


def referenced_steps(expr: Expression | str) -> set[str]:
    """The step ids that `expr` reads as `steps.<id>` (at the scope root, not in projections)."""
    if isinstance(expr, str):
        expr = Expression(expr, jmespath.compile(expr))
    return {field for name, field in expr.roots() if name == "steps" and field is not None}


def to_text(value: Any) -> str:
    """How a value reads inside a string: strings as is, null as '', the rest compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _build(
    value: Any, path: Path, problems: list[Problem], exprs: list[tuple[Path, Expression]]
) -> Any:
    """A render function for `value`; appends to `problems` and `exprs` as it goes."""
    if isinstance(value, dict):
        items = [(k, _build(v, (*path, k), problems, exprs)) for k, v in value.items()]
        if all(isinstance(r, _Const) for _, r in items):
            return _Const(value)
        return lambda scope: {k: r(scope) for k, r in items}
    if isinstance(value, list):
        parts = [_build(v, (*path, i), problems, exprs) for i, v in enumerate(value)]
        if all(isinstance(r, _Const) for r in parts):
            return _Const(value)
        return lambda scope: [r(scope) for r in parts]
    if not isinstance(value, str) or _OPEN not in value:
        return _Const(value)
    return _build_string(value, path, problems, exprs)


def _build_string(
    text: str, path: Path, problems: list[Problem], exprs: list[tuple[Path, Expression]]
) -> Any:
    pieces, error = split_template(text)
    if error:
        problems.append((path, error))
        return _Const(None)
    compiled: list[str | Expression] = []
    failed = False
    for piece in pieces:
        if isinstance(piece, str):
            compiled.append(piece)
            continue
        expr, found = compile_expression(piece[0].strip(), path)
        problems.extend(found)
        if expr is None:
            failed = True  # keep going: report every bad expression in the string
            continue
        exprs.append((path, expr))
        compiled.append(expr)
    if failed:
        return _Const(None)
    found_exprs = [p for p in compiled if isinstance(p, Expression)]
    if len(found_exprs) == 1 and not "".join(p for p in compiled if isinstance(p, str)).strip():
        return found_exprs[0].render  # one expression, maybe with whitespace: keep its JSON type
    parts = tuple(compiled)

    def interpolate(scope: dict[str, Any]) -> str:
        return "".join(p if isinstance(p, str) else to_text(p.render(scope)) for p in parts)

    return interpolate


def split_template(text: str) -> tuple[list[str | tuple[str]], str | None]:
    """Text pieces and `(expression,)` pieces of a template string, or an error message.

    The closing `}}` is found outside JMESPath quotes and braces, so `${{ {a: b} }}` works.
    """
    pieces: list[str | tuple[str]] = []
    pos = 0
    while (start := text.find(_OPEN, pos)) != -1:
        end, quote = _find_close(text, start + len(_OPEN))
        if quote:
            return [], f"unclosed {quote} quote in {text!r}"
        if end == -1:
            return [], f"unclosed '${{{{' in {text!r}: add '}}}}'"
        if start > pos:
            pieces.append(text[pos:start])
        pieces.append((text[start + len(_OPEN) : end],))
        pos = end + len(_CLOSE)
    if pos < len(text):
        pieces.append(text[pos:])
    return pieces, None


def _find_close(text: str, pos: int) -> tuple[int, str]:
    """Index of the closing `}}`, or -1 and the quote left open (if that is why)."""
    depth, quote, escaped = 0, "", False
    for i in range(pos, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0 and text.startswith(_CLOSE, i):
                return i, ""
            depth = max(depth - 1, 0)
    return -1, quote


def _describe(exc: jp_errors.JMESPathError) -> str:
    """jmespath's own reason, on one line, with a 1-based column."""
    if isinstance(exc, jp_errors.EmptyExpressionError):
        return "empty expression"
    if isinstance(exc, jp_errors.LexerError):
        reason, position = exc.message, exc.lexer_position
    elif isinstance(exc, jp_errors.IncompleteExpressionError):
        reason, position = "incomplete expression", exc.lex_position
    elif isinstance(exc, jp_errors.ParseError):
        reason, position = exc.msg, exc.lex_position
    else:
        return str(exc).splitlines()[0]
    return f"{reason[:1].lower()}{reason[1:]} at column {position + 1}"


def _node(parsed: ParsedResult) -> dict[str, Any]:
    """The AST as the plain dicts it is (jmespath's stubs call it a TypedDict)."""
    return cast("dict[str, Any]", parsed.parsed)


class _Const:
    """A render function that returns its value; marked so containers can fold constants."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __call__(self, scope: dict[str, Any]) -> Any:
        return self.value

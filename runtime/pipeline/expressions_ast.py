"""Load-time analysis of a parsed JMESPath AST: names it reads, functions, plain field chains."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jmespath.functions import Functions

Node = dict[str, Any]

_FUNCTIONS: dict[str, Any] = Functions().FUNCTION_TABLE

# Nodes whose children are evaluated one after another, each on the previous one's value.
_CHAINS = frozenset({"subexpression", "index_expression", "pipe"})
# Nodes whose first child is evaluated on the current value and the rest on each element.
_PROJECTIONS = frozenset({"projection", "value_projection", "filter_projection", "flatten"})
# Nodes whose children are all evaluated on the current value.
_SAME_VALUE = frozenset(
    {
        "comparator",
        "or_expression",
        "and_expression",
        "not_expression",
        "function_expression",
        "multi_select_list",
        "multi_select_dict",
        "key_val_pair",
    }
)
_KEEPS_VALUE = frozenset({"current", "identity"})


def root_references(ast: Node) -> set[tuple[str, str | None]]:
    """(name, first field after it or None) for each name read from the scope root.

    `steps.summary.text` gives ("steps", "summary"); `input` alone gives ("input", None).
    Fields inside projections and filters (`input.items[*].steps`) read each element, not the
    scope, so they are left out: that is what keeps `steps.<id>` checks free of false alarms.
    """
    found: set[tuple[str, str | None]] = set()
    _walk_root(ast, found)
    return found


def _walk_root(node: Node, found: set[tuple[str, str | None]]) -> None:
    kind = node["type"]
    children: list[Node] = node.get("children", [])
    if kind == "field":
        found.add((node["value"], None))
    elif kind in _SAME_VALUE:
        for child in children:
            _walk_root(child, found)
    elif kind in _PROJECTIONS:
        _walk_root(children[0], found)
    elif kind in _CHAINS:
        for i, child in enumerate(children):
            if child["type"] == "field":
                following = children[i + 1] if i + 1 < len(children) else None
                found.add((child["value"], _leading_field(following)))
                return
            _walk_root(child, found)
            if child["type"] not in _KEEPS_VALUE:
                return  # later children read a derived value, no longer the scope


def root_chains(ast: Node) -> set[tuple[str, ...]]:
    """The leading field chain of each read from the scope root: `steps.a.b[0].c` gives
    ("steps", "a", "b"); only the fields up to the first index or projection."""
    found: set[tuple[str, ...]] = set()
    _walk_chains(ast, found)
    return found


def _walk_chains(node: Node, found: set[tuple[str, ...]]) -> None:
    kind = node["type"]
    children: list[Node] = node.get("children", [])
    if kind == "field":
        found.add((node["value"],))
    elif kind in _SAME_VALUE:
        for child in children:
            _walk_chains(child, found)
    elif kind in _PROJECTIONS:
        _walk_chains(children[0], found)
    elif kind in _CHAINS:
        for i, child in enumerate(children):
            if child["type"] == "field":
                chain = [str(child["value"])]
                for following in children[i + 1:]:
                    lead = _leading_field(following)
                    if lead is None:
                        break
                    chain.append(lead)
                    if following["type"] != "field":
                        break
                found.add(tuple(chain))
                return
            _walk_chains(child, found)
            if child["type"] not in _KEEPS_VALUE:
                return


def _leading_field(node: Node | None) -> str | None:
    """The field a chain continues with: `a` in `steps.a[0].b` or in `steps.a[*]`."""
    while node is not None:
        if node["type"] == "field":
            return str(node["value"])
        if node["type"] not in _CHAINS | _PROJECTIONS:
            return None
        node = node["children"][0]
    return None


def check_functions(ast: Node) -> list[str]:
    """Unknown functions and wrong argument counts, which jmespath reports only at run time."""
    problems: list[str] = []
    stack = [ast]
    while stack:
        node = stack.pop()
        stack.extend(reversed(node.get("children", [])))
        if node["type"] != "function_expression":
            continue
        name, given = node["value"], len(node["children"])
        spec = _FUNCTIONS.get(name)
        if spec is None:
            problems.append(f"unknown function {name}()")
            continue
        signature = spec["signature"]
        if signature and signature[-1].get("variadic"):
            if given < len(signature):
                problems.append(f"{name}() takes at least {_args(len(signature))}, {given} given")
        elif given != len(signature):
            problems.append(f"{name}() takes {_args(len(signature))}, {given} given")
    return problems


def _args(count: int) -> str:
    return f"{count} argument" if count == 1 else f"{count} arguments"


def field_chain(ast: Node) -> tuple[str, ...] | None:
    """The fields of a plain chain like `steps.a.b`, or None for anything else."""
    if ast["type"] == "field":
        return (ast["value"],)
    if ast["type"] == "subexpression" and all(c["type"] == "field" for c in ast["children"]):
        return tuple(c["value"] for c in ast["children"])
    return None


def chain_reader(fields: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """What jmespath gives for `a.b.c`: a missing key or a non-object on the way is null."""
    if len(fields) == 1:
        (only,) = fields
        return lambda scope: scope.get(only) if isinstance(scope, dict) else None

    def read(scope: dict[str, Any]) -> Any:
        value: Any = scope
        for field in fields:
            if not isinstance(value, dict):
                return None
            value = value.get(field)
        return value

    return read

"""Limits on the YAML a mesh file may hold, checked before anything is built from it.

A hostile file of a few hundred bytes can otherwise take a process down: aliases that
refer to aliases ("billion laughs") expand exponentially when values are built, and
libyaml's composer recurses in C, so tens of thousands of nested `[` crash the process
outright. Both are found on the parser's event stream (flat: no recursion, no values
built), and only for texts that could break a limit, so ordinary files pay nothing.
"""

from __future__ import annotations

from pathlib import Path

import yaml

MAX_FILE_BYTES = 10_000_000  # 10 MB: far past any hand-written mesh or schema file
MAX_DEPTH = 100  # nesting levels of mappings and lists
ALIAS_BUDGET = 100_000  # nodes that aliases may add, counted as if expanded
# Below this many nesting indicators the composer cannot recurse deep enough to crash
# (it was tried to 20,000 levels); block nesting by indentation alone cannot get there
# within MAX_FILE_BYTES. The builder checks MAX_DEPTH itself.
_SAFE_INDICATORS = 10_000

_PARSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class FileTooLarge(OSError):
    """A file past MAX_FILE_BYTES: never read whole."""

    def __init__(self, size: int):
        super().__init__(f"the file is {size:,} bytes; a mesh or schema file may be at most "
                         f"{MAX_FILE_BYTES // 1_000_000} MB")


def read_source_text(path: Path) -> str:
    """The text of a mesh or schema file; FileTooLarge past MAX_FILE_BYTES (even a pipe)."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise FileTooLarge(size)
    with path.open(encoding="utf-8") as file:
        text = file.read(MAX_FILE_BYTES + 1)  # a FIFO or a device reports no size
    if len(text) > MAX_FILE_BYTES:
        raise FileTooLarge(len(text.encode()))
    return text


def structure_problem(text: str) -> tuple[int, int, str] | None:
    """(line, column, message) of the first alias budget or depth overrun, else None.

    Syntax errors are left to the composer, which words them better.
    """
    has_aliases = "&" in text and "*" in text
    indicators = text.count("[") + text.count("{") + text.count("-") + text.count("?")
    if not has_aliases and indicators < _SAFE_INDICATORS:
        return None
    try:
        return _scan(text)
    except yaml.YAMLError:
        return None


def _scan(text: str) -> tuple[int, int, str] | None:
    sizes: dict[str, int] = {}  # anchor -> nodes in its value, aliases counted expanded
    open_anchors: set[str] = set()
    counts: list[int] = []  # nodes so far in each open collection, outermost first
    anchors: list[str | None] = []  # each open collection's anchor
    expanded = 0
    parser = _PARSER(text)
    try:
        while True:
            event = parser.get_event()
            at = (event.start_mark.line + 1, event.start_mark.column + 1)
            if isinstance(event, yaml.StreamEndEvent):
                return None
            if isinstance(event, yaml.AliasEvent):
                anchor = str(event.anchor)
                if anchor in open_anchors:
                    return (*at, f"alias *{anchor} refers to the value it is part of "
                                 "(a value cannot contain itself)")
                size = sizes.get(anchor)
                if size is None:
                    return None  # an unknown anchor: the composer says so
                expanded += size
                if expanded > ALIAS_BUDGET:
                    return (*at, f"aliases expand to more than {ALIAS_BUDGET:,} values "
                                 f"(at *{anchor}); write the values out, or use fewer aliases")
                if counts:
                    counts[-1] += size
            elif isinstance(event, yaml.CollectionStartEvent):
                if len(counts) >= MAX_DEPTH:
                    return (*at, f"nested more than {MAX_DEPTH} levels deep")
                counts.append(1)
                anchors.append(event.anchor)
                if event.anchor is not None:
                    open_anchors.add(event.anchor)
            elif isinstance(event, yaml.CollectionEndEvent):
                count, opened = counts.pop(), anchors.pop()
                if opened is not None:
                    sizes[opened] = count
                    open_anchors.discard(opened)
                if counts:
                    counts[-1] += count
            elif isinstance(event, yaml.ScalarEvent):
                if event.anchor is not None:
                    sizes[event.anchor] = 1
                if counts:
                    counts[-1] += 1
    finally:
        parser.dispose()


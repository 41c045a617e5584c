"""YAML composed into position-keeping nodes, within limits, without recursion.

A hostile file of a few hundred bytes could otherwise take a process down: aliases that
refer to aliases ("billion laughs") expand exponentially when values are built, and
libyaml's own composer recurses in C, so some 30,000 nested `[` crash the process
outright. So a file with anchors, or with enough `[`/`{`/`-`/`?` to nest that deep, is
composed here instead, from libyaml's flat stream of events, with a stack instead of
recursion, the limits checked on the way: at most MAX_DEPTH levels, and aliases that
would expand to at most ALIAS_BUDGET values. Ordinary files take libyaml's fast path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError

MAX_FILE_BYTES = 10_000_000  # 10 MB: far past any hand-written mesh or schema file
MAX_DEPTH = 100  # nesting levels of mappings and lists
ALIAS_BUDGET = 100_000  # values that aliases may add, counted as if expanded

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser, when built
# libyaml's composer is faster than ours, but recurses in C: past some 25,000 levels it
# crashes. Below this many nesting indicators it cannot get near that.
_C_SAFE = 10_000
_SCALAR = yaml.ScalarEvent
_ENDS = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


class FileTooLarge(OSError):
    """A file past MAX_FILE_BYTES: never read whole."""

    def __init__(self, size: int):
        super().__init__(f"the file is {size:,} bytes; a mesh or schema file may be at most "
                         f"{MAX_FILE_BYTES // 1_000_000} MB")


class LimitExceeded(Exception):
    """A file past one of the limits, at a line and column (1-based)."""

    def __init__(self, mark: Any, message: str):
        super().__init__(message)
        self.line, self.column, self.message = mark.line + 1, mark.column + 1, message


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


def compose(text: str, *, fast: bool = True) -> yaml.Node | None:
    """The single document of `text` as nodes (None if empty), as `yaml.compose` gives it.

    Raises yaml.YAMLError for a syntax error and LimitExceeded past a limit (the depth
    limit is left to whoever walks the nodes when libyaml composed them). `fast=False`
    always composes here.
    """
    if fast and "&" not in text and _indicators(text) < _C_SAFE:
        return yaml.compose(text, Loader=_LOADER)  # no aliases, and too few `[` to crash it
    loader = _LOADER(text)
    try:
        loader.get_event()  # the stream's start
        if loader.check_event(yaml.StreamEndEvent):
            return None
        start = loader.get_event()  # the document's start
        root = _Composer(loader).run()
        loader.get_event()  # the document's end
        if not loader.check_event(yaml.StreamEndEvent):
            extra = loader.get_event()
            raise ComposerError("expected a single document in the stream", start.start_mark,
                                "but found another document", extra.start_mark)
        return root
    finally:
        loader.dispose()


def _indicators(text: str) -> int:
    """An upper bound on how deep `text` can nest, short of indentation (which cannot get
    far within MAX_FILE_BYTES: d levels take d * d / 2 spaces)."""
    return sum(text.count(c) for c in "[{-?")


class _Composer:
    """PyYAML's composer, with a stack for recursion and the limits checked as it goes."""

    def __init__(self, loader: yaml.SafeLoader):
        self.loader = loader
        self.anchors: dict[str, yaml.Node] = {}
        self.sizes: dict[str, int] = {}  # anchor -> values in it, aliases counted expanded
        self.expanded = 0

    def run(self) -> yaml.Node:
        get_event, resolve = self.loader.get_event, self.loader.resolve
        open_nodes: list[yaml.CollectionNode] = []
        counts: list[int] = []  # values so far in each open collection
        keys: list[yaml.Node | None] = []  # a mapping's key waiting for its value
        anchors: list[str | None] = []
        node: yaml.Node
        while True:
            event: Any = get_event()  # libyaml's events and marks, which stubs lack
            kind = type(event)  # exact classes: this loop runs once per value of the file
            if kind is _SCALAR:  # by far the most common: inlined
                tag = event.tag
                if tag is None or tag == "!":
                    tag = resolve(yaml.ScalarNode, event.value, event.implicit)
                node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark,
                                       style=event.style)
                if event.anchor is not None:
                    self._anchor(event, node, 1)
                size = 1
            elif kind in _ENDS:
                node, size, anchor = open_nodes.pop(), counts.pop(), anchors.pop()
                keys.pop()
                node.end_mark = event.end_mark
                if anchor is not None:
                    self.sizes[anchor] = size
            elif kind is yaml.AliasEvent:
                node, size = self._alias(event)
            else:  # the start of a sequence or a mapping
                if len(open_nodes) >= MAX_DEPTH:
                    raise LimitExceeded(event.start_mark, f"nested more than {MAX_DEPTH} "
                                        "levels deep")
                open_nodes.append(self._collection(event))
                counts.append(1)
                keys.append(None)
                anchors.append(event.anchor)
                self._anchor(event, open_nodes[-1], None)
                continue
            if not open_nodes:
                return node
            counts[-1] += size
            parent = open_nodes[-1]
            if type(parent) is yaml.SequenceNode:
                parent.value.append(node)
            elif keys[-1] is None:
                keys[-1] = node
            else:
                parent.value.append((keys[-1], node))
                keys[-1] = None

    def _collection(self, event: Any) -> yaml.CollectionNode:
        kind = yaml.SequenceNode if isinstance(event, yaml.SequenceStartEvent) else \
            yaml.MappingNode
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(kind, None, event.implicit)
        return kind(tag, [], event.start_mark, None, flow_style=event.flow_style)

    def _anchor(self, event: Any, node: yaml.Node, size: int | None) -> None:
        anchor = getattr(event, "anchor", None)
        if anchor is None:
            return
        if anchor in self.anchors:
            raise ComposerError(f"found duplicate anchor {anchor!r}; first occurrence",
                                self.anchors[anchor].start_mark, "second occurrence",
                                event.start_mark)
        self.anchors[anchor] = node
        if size is not None:
            self.sizes[anchor] = size

    def _alias(self, event: Any) -> tuple[yaml.Node, int]:
        anchor = str(event.anchor)
        if anchor not in self.anchors:
            raise ComposerError(None, None, f"found undefined alias {anchor!r}",
                                event.start_mark)
        size = self.sizes.get(anchor)
        if size is None:  # its collection is still open: the alias is inside it
            raise LimitExceeded(event.start_mark, f"alias *{anchor} refers to the value it is "
                                "part of (a value cannot contain itself)")
        self.expanded += size
        if self.expanded > ALIAS_BUDGET:
            raise LimitExceeded(event.start_mark, f"aliases expand to more than "
                                f"{ALIAS_BUDGET:,} values (at *{anchor}); write the values "
                                "out, or use fewer aliases")
        return self.anchors[anchor], size

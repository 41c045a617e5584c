"""mesh.yaml parsed piece by piece, so a reload re-parses only the entries that changed.

Parsing is the one part of a load whose cost follows the whole file (about 1 s of pure
Python YAML for 1,000 agents). The file is cut at its top-level keys, and the `agents:`,
`pipelines:` and `external:` blocks at each entry; each piece is parsed alone, once per
distinct text, and the values and positions are put back together. Whenever that could
differ from parsing the file whole (a piece that does not parse alone, a key twice, a
line of unusual shape), the whole file is parsed the usual way instead, so values and
messages are always exactly those of `load_source`.
"""

from __future__ import annotations

import itertools
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.core.issues import DocPath
from runtime.load.yamlguard import read_source_text
from runtime.load.yamlsource import Mark, SourceDoc, load_source, parse_source

_TOP_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*:(\s|$)")
_BLOCK_HEAD = re.compile(r"(agents|pipelines|external):[ ]*(#.*)?$")
_ENTRY_KEY = re.compile(r"[A-Za-z0-9_.-]+:(\s|$)")
_ENV_VAR = re.compile(r"\$\{(?!\{)")  # `${VAR}` depends on the environment: never cached


@dataclass
class _Piece:
    """One parsed piece: its single key and value, positions relative to its first line."""

    key: str
    value: Any
    values: dict[DocPath, Mark]
    keys: dict[DocPath, Mark]
    placed: tuple[int, dict[DocPath, Mark], dict[DocPath, Mark]] | None = None

    def at(self, start: int) -> tuple[dict[DocPath, Mark], dict[DocPath, Mark]]:
        """Positions with the piece starting at line `start` (0-based); the last one is kept."""
        if self.placed is None or self.placed[0] != start:
            self.placed = (start,
                           {p: (line + start, col) for p, (line, col) in self.values.items()},
                           {p: (line + start, col) for p, (line, col) in self.keys.items()})
        return self.placed[1], self.placed[2]


@dataclass(frozen=True)
class _Cut:
    start: int  # 0-based line numbers, end exclusive
    end: int
    indent: int
    block: str | None  # the block an entry belongs to; None for a top-level key
    head: int = 0  # the line of the block's own key (`agents:`)


class _Positions(Mapping[DocPath, Mark]):
    """Positions by path: an entry's own come from its piece (no copying of 1,000 pieces'
    positions into one dict on every load; they are looked up only to word a problem)."""

    def __init__(self) -> None:
        self.own: dict[DocPath, Mark] = {}  # top-level keys and the blocks' own keys
        self.entries: dict[DocPath, dict[DocPath, Mark]] = {}  # by (block, entry name)

    def _table(self, path: DocPath) -> dict[DocPath, Mark]:
        return self.entries.get(path[:2], self.own) if len(path) >= 2 else self.own

    def __getitem__(self, path: DocPath) -> Mark:
        return self._table(path)[path]

    def __contains__(self, path: object) -> bool:
        return isinstance(path, tuple) and path in self._table(path)

    def __iter__(self) -> Iterator[DocPath]:
        yield from self.own
        for table in self.entries.values():
            yield from table

    def __len__(self) -> int:
        return len(self.own) + sum(len(table) for table in self.entries.values())


class SourceCache:
    """Parsed pieces of mesh files, keyed by their text; bounded in size."""

    def __init__(self, size: int = 20_000):
        self.size = size
        self._pieces: OrderedDict[tuple[str | None, int, str], _Piece] = OrderedDict()

    def load(self, path: Path, *, display: str,
             environ: dict[str, str] | None = None) -> SourceDoc:
        """Like `load_source`, re-using the pieces of the file that did not change."""
        try:
            text = read_source_text(path)
        except (OSError, ValueError):
            return load_source(path, display=display, environ=environ)
        doc = self._assemble(text, display, environ)
        return doc if doc is not None else parse_source(text, SourceDoc(display), environ)

    def _assemble(self, text: str, display: str,
                  environ: dict[str, str] | None) -> SourceDoc | None:
        if "\r" in text or text.startswith("\ufeff"):
            return None
        lines = text.split("\n")
        cuts = _cut(lines)
        if not cuts:
            return None
        doc = SourceDoc(display, data={})
        values, keys = doc.values, doc.keys = _Positions(), _Positions()  # type: ignore[assignment]
        values.own[()] = (cuts[0].start + 1, 1)
        offsets = [0, *itertools.accumulate(len(line) + 1 for line in lines)]
        for cut in cuts:
            raw = text[offsets[cut.start]:offsets[cut.end]]
            piece = self._piece(raw, lines, cut, display, environ)
            if piece is None:
                return None
            target = doc.data if cut.block is None else doc.data.get(cut.block)
            if cut.block is not None and target is None:  # the block's first entry
                target = doc.data[cut.block] = {}
                keys.own[(cut.block,)] = (cut.head + 1, 1)
                values.own[(cut.block,)] = (cut.start + 1, cut.indent + 1)
            if piece.key in target:
                return None  # a key twice: the whole parse words that message
            target[piece.key] = piece.value
            placed_values, placed_keys = piece.at(cut.start)
            if cut.block is None:
                values.own.update(placed_values)
                keys.own.update(placed_keys)
            else:
                values.entries[(cut.block, piece.key)] = placed_values
                keys.entries[(cut.block, piece.key)] = placed_keys
        return doc

    def _piece(self, raw: str, lines: list[str], cut: _Cut, display: str,
               environ: dict[str, str] | None) -> _Piece | None:
        key = (cut.block, cut.indent, raw)
        found = self._pieces.get(key)
        if found is not None:
            self._pieces.move_to_end(key)
            return found
        # Inside an entry, a line indented less than its key is blank or a comment: drop it.
        pad = " " * cut.indent
        text = "\n".join(line[cut.indent:] if line.startswith(pad) else ""
                         for line in lines[cut.start:cut.end])
        parsed = parse_source(text, SourceDoc(display), environ)
        if parsed.issues or not isinstance(parsed.data, dict) or len(parsed.data) != 1:
            return None
        (name, value), = parsed.data.items()
        prefix: DocPath = (cut.block,) if cut.block is not None else ()
        piece = _Piece(
            name, value,
            {(*prefix, *p): (line, col + cut.indent) for p, (line, col) in parsed.values.items()
             if p},
            {(*prefix, *p): (line, col + cut.indent) for p, (line, col) in parsed.keys.items()},
        )
        if not _ENV_VAR.search(text):
            self._pieces[key] = piece
            if len(self._pieces) > self.size:
                self._pieces.popitem(last=False)
        return piece


def _cut(lines: list[str]) -> list[_Cut] | None:
    """The pieces of a file in order; None when its shape is not the plain, usual one."""
    indents = [_indent(line) for line in lines]
    tops = [i for i, indent in enumerate(indents) if indent == 0]
    if not tops or any(not _TOP_KEY.match(lines[i]) for i in tops):
        return None
    cuts: list[_Cut] = []
    for t, end in zip(tops, [*tops[1:], len(lines)], strict=True):
        head = _BLOCK_HEAD.match(lines[t])
        first = next((i for i in range(t + 1, end) if indents[i] > 0), None)
        if head is None or first is None:
            cuts.append(_Cut(t, end, 0, None))
            continue
        indent = indents[first]
        starts = [i for i in range(first, end) if 0 < indents[i] <= indent]
        if any(indents[i] != indent or not _ENTRY_KEY.match(lines[i], indent) for i in starts):
            return None
        cuts.extend(_Cut(s, e, indent, head.group(1), t)
                    for s, e in zip(starts, [*starts[1:], end], strict=True))
    return cuts


def _indent(line: str) -> int:
    """Spaces before the content; -1 for a blank line or a comment (they never cut)."""
    rest = line.lstrip(" ")
    if not rest or rest[0] == "#" or rest.isspace():
        return -1
    return len(line) - len(rest)

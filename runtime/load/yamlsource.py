"""YAML (and JSON) parsed with positions kept: every value knows its file, line and column.

PyYAML's safe_load drops positions and silently keeps the last of two equal keys.
We compose the node tree instead, build plain Python values from it, and record
where each path came from, so a problem found later (by pydantic, by a schema
check, by an import) can still be shown as `file:line:col`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runtime.core.issues import DocPath, Issue, dotted
from runtime.load.hints import yaml_hint
from runtime.load.yamlguard import (
    MAX_DEPTH,
    FileTooLarge,
    LimitExceeded,
    compose,
    read_source_text,
)

# ${VAR} or ${VAR:-default}; `${{ expr }}` (pipeline expressions) is left alone.
_ENV_VAR = re.compile(r"\$\{(?!\{)([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
Mark = tuple[int, int]  # 1-based line, column


@dataclass
class SourceDoc:
    """A parsed file: its data, and where each path's key and value stand in the text."""

    file: str
    data: Any = None
    values: dict[DocPath, Mark] = field(default_factory=dict)
    keys: dict[DocPath, Mark] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)

    def mark(self, path: DocPath, *, key: bool = False) -> Mark:
        """The position of `path` (its key when `key`), else of its closest ancestor."""
        probe = tuple(path)
        while True:
            table = self.keys if key else self.values
            if probe in table:
                return table[probe]
            if key and probe in self.values:
                return self.values[probe]
            if not probe:
                return (1, 1)
            probe = probe[:-1]
            key = False  # an ancestor's value is the closest thing to a missing key

    def issue(self, path: DocPath, message: str, *, key: bool = False,
              severity: str = "error") -> Issue:
        """An Issue at `path`, its text `file:line:col: dotted.path: message`."""
        line, column = self.mark(path, key=key)
        return Issue(self.file, line, column, dotted(path), message, severity)


def _mark(node: yaml.Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Turns a composed node tree into Python values, recording positions and problems."""

    def __init__(self, doc: SourceDoc, environ: dict[str, str]):
        self.doc = doc
        self.environ = environ
        self.constructor = yaml.SafeLoader("")  # constructs scalars, resolves implicit tags
        self.too_deep = False
        self.unreadable = False  # a value no constructor could read: nothing to check

    def build(self, node: yaml.Node, path: DocPath) -> Any:
        self.doc.values[path] = _mark(node)
        if len(path) >= MAX_DEPTH:  # the root is a level too: this node is one level past
            if not self.too_deep:
                self.too_deep = True
                self.doc.issues.append(Issue(self.doc.file, *_mark(node), "",
                                             f"nested more than {MAX_DEPTH} levels deep"))
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)  # the third and last kind of YAML node
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: DocPath) -> dict[str, Any]:
        self.constructor.flatten_mapping(node)  # YAML merge keys (<<) as users expect
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str | int | float | bool) or key is None:
                self.doc.issues.append(
                    Issue(self.doc.file, *_mark(key_node), dotted(path), "a key must be a plain value")
                )
                continue
            key = str(key)
            child = (*path, key)
            if key in result:
                first_line = self.doc.keys[child][0]
                self.doc.issues.append(
                    Issue(self.doc.file, *_mark(key_node), dotted(child),
                          f"duplicate key '{key}' (first defined on line {first_line})")
                )
                continue
            self.doc.keys[child] = _mark(key_node)
            result[key] = self.build(value_node, child)
        return result

    def _scalar(self, node: yaml.ScalarNode, path: DocPath) -> Any:
        if not isinstance(node.value, str) or "${" not in node.value:
            return self._construct(node, path)
        text = _ENV_VAR.sub(lambda m: self._lookup(m, node, path), node.value)
        if node.style is None:  # a plain scalar: `port: ${PORT}` becomes an int, as typed
            tag = self.constructor.resolve(yaml.ScalarNode, text, (True, False))
            node = yaml.ScalarNode(tag, text, node.start_mark, node.end_mark, node.style)
            return self._construct(node, path)
        return text

    def _construct(self, node: yaml.ScalarNode, path: DocPath) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except Exception as exc:  # PyYAML's constructors raise all sorts on user text
            # An unknown `!tag`, or a known one on a value it cannot read (`!!float abc`).
            if isinstance(exc, yaml.YAMLError):
                problem = getattr(exc, "problem", None) or str(exc)
            else:
                problem = f"{node.value!r} is not a valid !!{node.tag.rsplit(':', 1)[-1]}"
            self.doc.issues.append(Issue(self.doc.file, *_mark(node), dotted(path),
                                         f"cannot read this value: {problem}"))
            self.unreadable = True
            return None

    def _lookup(self, match: re.Match[str], node: yaml.Node, path: DocPath) -> str:
        name, default = match.group(1), match.group(2)
        value = self.environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is not None:
                return default
            line, column = _mark(node)
            self.doc.issues.append(
                Issue(self.doc.file, line, column, dotted(path),
                      f"environment variable {name} is not set "
                      f"(set it, or give a default: ${{{name}:-value}})")
            )
            return ""
        return value


def load_source(path: Path, *, display: str | None = None,
                environ: dict[str, str] | None = None) -> SourceDoc:
    """Parse a YAML or JSON file; syntax errors and duplicate keys land in `.issues`."""
    doc = SourceDoc(display or str(path))
    try:
        text = read_source_text(path)
    except FileNotFoundError:
        doc.issues.append(Issue(doc.file, 1, 1, "", "no such file (run where your mesh.yaml "
                                "is, or name it with -f path/to/mesh.yaml)"))
        return doc
    except FileTooLarge as exc:
        doc.issues.append(Issue(doc.file, 1, 1, "", str(exc)))
        return doc
    except OSError as exc:
        doc.issues.append(Issue(doc.file, 1, 1, "", f"cannot read file: {exc.strerror or exc}"))
        return doc
    except UnicodeDecodeError as exc:
        doc.issues.append(Issue(doc.file, 1, 1, "", f"not UTF-8 text (byte {exc.start}: "
                                f"{exc.object[exc.start:exc.start + 1]!r})"))
        return doc
    return parse_source(text, doc, environ)


def _compose(text: str) -> yaml.Node | None:
    try:
        return compose(text)  # libyaml's parser: about 10x faster than PyYAML's own
    except yaml.YAMLError as fast_error:
        try:  # parse again, for the Python parser's wording and position
            yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            raise
        except RecursionError:
            pass
        raise fast_error from None


def parse_source(text: str, doc: SourceDoc, environ: dict[str, str] | None = None) -> SourceDoc:
    """Parse `text` into `doc` (see load_source)."""
    try:
        node = _compose(text)
    except LimitExceeded as exc:
        doc.issues.append(Issue(doc.file, exc.line, exc.column, "", exc.message))
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        lines = text.splitlines()
        hint = yaml_hint(problem, exc.context or "", lines[line - 1] if line <= len(lines) else "")
        doc.issues.append(Issue(doc.file, line, column, "", f"YAML syntax error: {problem}{hint}"))
        return doc
    except yaml.YAMLError as exc:
        doc.issues.append(Issue(doc.file, 1, 1, "", f"YAML syntax error: {exc}"))
        return doc
    if node is None:
        doc.data = None
        return doc
    builder = _Builder(doc, dict(os.environ) if environ is None else environ)
    data = builder.build(node, ())
    doc.data = None if builder.too_deep or builder.unreadable else data  # as a syntax error
    return doc

"""Problems found in a user's file, each pinned to a file, line and column."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PathPart = str | int
DocPath = tuple[PathPart, ...]


def dotted(path: Sequence[PathPart]) -> str:
    """`("agents", "nlp.summarizer", "handler")` -> `agents.nlp.summarizer.handler`."""
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")


@dataclass(frozen=True, order=True)
class Issue:
    """One problem, printed the way editors jump to it: `file:line:col: path: message`."""

    file: str
    line: int
    column: int
    path: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        label = "" if self.severity == "error" else f"{self.severity}: "
        if self.path:
            return f"{where}: {label}{self.path}: {self.message}"
        return f"{where}: {label}{self.message}"


class MeshFileError(ValueError):
    """A mesh file that cannot be applied; carries every problem found, not just the first."""

    def __init__(self, issues: Iterable[Issue], warnings: Iterable[Issue] = ()):
        self.issues = sorted(issues)
        self.warnings = sorted(warnings)  # found too; `validate` shows them beside the errors
        super().__init__("\n".join(str(i) for i in self.issues))

"""Edits of the user's code not yet served, coalesced: what the next generation is for.

Each generation records what every watched file held when its workers were told to load
(`read`). An event on a file whose content and times are still what the latest
generation read is no edit at all: the rest of one save's events (an editor that
empties then writes, a watch that starts again and looks back), or a save of what was
already there. So one save starts one generation, and a storm of saves at most one
generation at a time, for whatever changed while the previous one started.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from runtime.supervise.filewatch import UNSEEN, Signature, signature, signatures


class PendingEdits:
    """Files changed since the latest generation read them, and `stale` reports."""

    def __init__(self) -> None:
        self._paths: set[Path] = set()
        self._stale = False  # a worker said the mesh names code it has only in an older version
        self._read: dict[Path, Signature] = {}

    def add(self, paths: Collection[Path] = (), stale: bool = False) -> None:
        self._paths |= set(paths)
        self._stale |= stale

    def read(self, files: Collection[Path]) -> None:
        """A generation is about to load `files` as they are now."""
        self._read.update(signatures(files))

    def take(self) -> tuple[set[Path], bool] | None:
        """What the next generation is for (files really changed, stale), or None; cleared."""
        files = self._changed()
        stale = self._stale
        self._paths.clear()
        self._stale = False
        return (files, stale) if files or stale else None

    def waiting(self) -> bool:
        """Whether an edit came that the latest generation did not read."""
        return self._stale or bool(self._changed())

    def _changed(self) -> set[Path]:
        return {path for path in self._paths if signature(path) != self._read.get(path, UNSEEN)}

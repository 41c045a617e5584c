"""Bursts of edits to a set of files, for the mesh reloader and the code watcher alike.

Folders are watched, not files, because editors save by writing a new file and
renaming it over the old one. The set of files may change between bursts: a watch
that no longer covers every folder starts again, and a new watch first reports the
files touched since the last one ended, so an edit made in between is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection
from pathlib import Path

from watchfiles import Change as FileEvent
from watchfiles import awatch

log = logging.getLogger("mesh-runtime")
logging.getLogger("watchfiles").setLevel(logging.WARNING)  # we log each reload ourselves

STEP_MS = 10  # how often the watcher looks at its events: a save is seen in about 20 ms
DEBOUNCE_MS = 100  # events closer than a step apart coalesce; a longer burst is cut here
IDLE_MS = 500  # the watcher wakes this often when idle, to notice a wider set of folders
CLOCK_SLACK = 0.05  # file times come from a coarse clock: count slightly older ones as new
RETRY_SECONDS = 1.0  # after the watcher itself failed (a watched folder removed, say)


class FileWatch:
    """The files `files()` names, watched; `changes` yields each burst of edits to them."""

    def __init__(self, files: Callable[[], Collection[Path]], since: float):
        self.files = files
        # Edits since this moment are looked for when a watch begins (see `_watch`).
        self.since = since - CLOCK_SLACK
        self._restart = asyncio.Event()

    def rewatch(self, since: float) -> None:
        """Watch again now, reporting edits made since `since` (the files may be new)."""
        self.since = min(self.since, since - CLOCK_SLACK)
        self._restart.set()

    def _folders(self) -> set[Path]:
        return {f.parent for f in self.files()}

    def _relevant(self, _event: FileEvent, path: str) -> bool:
        return Path(path) in self.files()

    async def changes(self, stop: asyncio.Event) -> AsyncIterator[set[Path]]:
        """Each burst of events on the watched files, as a set of paths, until `stop`."""
        while not stop.is_set():
            folders = self._folders()
            self._restart.clear()
            try:
                async with contextlib.aclosing(self._watch(folders, stop)) as bursts:
                    async for changed in bursts:
                        yield changed
                        if not self._folders() <= folders:
                            break  # a file in a new folder: watch that folder too
            except Exception as exc:  # the watcher itself failed; serving goes on
                log.warning("watching for changes failed (%s); retrying in %gs",
                            exc or type(exc).__name__, RETRY_SECONDS)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_SECONDS)

    async def _watch(self, folders: set[Path],
                     stop: asyncio.Event) -> AsyncGenerator[set[Path], None]:
        existing = sorted(str(f) for f in folders if f.is_dir())
        ended = asyncio.Event()  # set by `stop` or `rewatch`: either ends this watch
        relay = asyncio.ensure_future(_first_of(stop, self._restart, ended))
        # stop_event, not cancellation, ends watchfiles' waiting thread within a step;
        # awatch leaves signal handling to us, so Ctrl-C and SIGTERM still reach `up`.
        watcher = awatch(*existing, watch_filter=self._relevant, step=STEP_MS,
                         debounce=DEBOUNCE_MS, stop_event=ended, recursive=False,
                         rust_timeout=IDLE_MS, yield_on_timeout=True)
        since, first = self.since, True
        try:
            async with contextlib.aclosing(watcher):
                async for events in watcher:  # an idle timeout yields an empty set
                    changed = {Path(path) for _, path in events}
                    if first:  # the watch is surely on by now: add edits made before it began
                        changed |= self._touched_since(since)
                        first = False
                    self.since = time.time() - CLOCK_SLACK
                    if changed:
                        yield changed
        finally:
            relay.cancel()

    def _touched_since(self, since: float) -> set[Path]:
        touched = set()
        for path in self.files():
            try:
                if path.stat().st_mtime > since:
                    touched.add(path)
            except OSError:  # gone (or going: a save by rename)
                touched.add(path)
        return touched


# What a file holds, as far as a reload cares: its content and its times (`touch` reloads).
Signature = tuple[int, int, bytes] | None  # (mtime_ns, inode, digest); None: missing
UNSEEN: Signature = (-1, -1, b"")  # a file no generation has read


def signature(path: Path) -> Signature:
    """The file's signature now: one save (in place, emptied then written, or renamed over)
    changes it once, however many events the editor's way of writing makes."""
    try:
        with path.open("rb") as file:
            status = os.fstat(file.fileno())
            digest = hashlib.blake2b(file.read(), digest_size=16).digest()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_ino, digest


def signatures(paths: Collection[Path]) -> dict[Path, Signature]:
    return {path: signature(path) for path in paths}


def python_files_beside(files: Collection[Path]) -> frozenset[Path]:
    """Every .py file in the folders of `files` (a broken edit may be a new module)."""
    return frozenset(p.resolve() for folder in {f.parent for f in files}
                     for p in folder.glob("*.py"))


def modified_after(path: Path, moment: float) -> bool:
    """Whether the file changed after `moment` (time.time()); a missing file did not."""
    try:
        return path.stat().st_mtime > moment
    except OSError:
        return False


def shown(path: Path) -> str:
    """A path as a log line shows it: relative to the working folder when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


async def _first_of(stop: asyncio.Event, restart: asyncio.Event, ended: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in (stop, restart)]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        ended.set()
    finally:
        for wait in waits:
            wait.cancel()

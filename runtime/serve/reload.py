"""Hot reload: watch the mesh's folders, load each edit whole, apply only the difference.

The loop has uvicorn's shape, `for changes in watcher: apply`. Folders are watched,
not files, because editors save by writing a new file and renaming it over the old
one. An invalid edit is logged and changes nothing; a valid one goes through the same
`MeshServer.apply` as the start, which touches only what differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

from watchfiles import Change as FileEvent
from watchfiles import awatch

from runtime.core.issues import MeshFileError
from runtime.load.loader import LoadCache, load_mesh
from runtime.load.mesh import Mesh
from runtime.serve.server import Change, MeshServer

log = logging.getLogger("mesh-runtime")
logging.getLogger("watchfiles").setLevel(logging.WARNING)  # we log each reload ourselves

STEP_MS = 10  # how often the watcher looks at its events: a save is seen in about 20 ms
DEBOUNCE_MS = 100  # events closer than a step apart coalesce; a longer burst is cut here
IDLE_MS = 500  # the watcher wakes this often when idle (see `changes`)
MISSING_GRACE = 0.05  # a save by rename can leave the file missing for a moment
CLOCK_SLACK = 0.05  # file times come from a coarse clock: count slightly older ones as new
RETRY_SECONDS = 1.0  # after the watcher itself failed (a watched folder removed, say)


class Reloader:
    """The last good mesh and the files it came from; applies each valid edit of them."""

    def __init__(self, server: MeshServer, mesh: Mesh, cache: LoadCache | None = None):
        self.server = server
        self.mesh = mesh
        self.cache = cache if cache is not None else LoadCache()
        self.rejected = False  # the last edit was invalid
        # Edits since this moment are looked for when a watch begins (see `_watch`).
        self.since = (self.cache.loaded_at or time.time()) - CLOCK_SLACK

    async def run(self, stop: asyncio.Event) -> None:
        """Reload on every burst of changes until `stop` is set."""
        async for changed in self.changes(stop):
            for path in sorted(changed & self.handler_files):
                log.warning("%s changed: handler code changes need a restart of "
                            "mesh-runtime up", _shown(path))
            if changed & self.mesh.watched_files:
                await self.reload()

    @property
    def handler_files(self) -> frozenset[Path]:
        """The user's own handler modules (beside the mesh file or below it)."""
        home = self.mesh.path.resolve().parent
        return frozenset(f for f in self.mesh.handler_files if f.is_relative_to(home))

    def _folders(self) -> set[Path]:
        return {f.parent for f in (self.mesh.watched_files | self.handler_files)}

    def _relevant(self, _event: FileEvent, path: str) -> bool:
        found = Path(path)
        return found in self.mesh.watched_files or found in self.handler_files

    async def changes(self, stop: asyncio.Event) -> AsyncIterator[set[Path]]:
        """Each burst of events on the watched files, as a set of paths, until `stop`."""
        while not stop.is_set():
            folders = self._folders()
            try:
                async with contextlib.aclosing(self._watch(folders, stop)) as bursts:
                    async for changed in bursts:
                        yield changed
                        if not self._folders() <= folders:
                            break  # the mesh now refers to a file in a new folder: watch it
            except Exception as exc:  # the watcher itself failed; serving goes on
                log.warning("watching for changes failed (%s); retrying in %gs",
                            exc or type(exc).__name__, RETRY_SECONDS)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_SECONDS)

    async def _watch(self, folders: set[Path],
                     stop: asyncio.Event) -> AsyncGenerator[set[Path], None]:
        existing = sorted(str(f) for f in folders if f.is_dir())
        # stop_event, not cancellation, ends watchfiles' waiting thread within a step;
        # awatch leaves signal handling to us, so Ctrl-C and SIGTERM still reach `up`.
        watcher = awatch(*existing, watch_filter=self._relevant, step=STEP_MS,
                         debounce=DEBOUNCE_MS, stop_event=stop, recursive=False,
                         rust_timeout=IDLE_MS, yield_on_timeout=True)
        since, first = self.since, True
        async with contextlib.aclosing(watcher):
            async for events in watcher:  # an idle timeout yields an empty set
                changed = {Path(path) for _, path in events}
                if first:  # the watch is surely on by now: add edits made before it began
                    changed |= self._touched_since(since)
                    first = False
                self.since = time.time() - CLOCK_SLACK
                if changed:
                    yield changed

    def _touched_since(self, since: float) -> set[Path]:
        touched = set()
        for path in self.mesh.watched_files | self.handler_files:
            try:
                if path.stat().st_mtime > since:
                    touched.add(path)
            except OSError:  # gone (or going: a save by rename)
                touched.add(path)
        return touched

    async def reload(self) -> Change | None:
        """Load the mesh file again and apply it if valid; the change applied, if any."""
        started = time.perf_counter()
        path = self.mesh.path
        if not path.exists():
            await asyncio.sleep(MISSING_GRACE)  # mid-rename: the new file is about to land
            if not path.exists():
                log.warning("%s is missing; still serving generation %d (waiting for it "
                            "to be written again)", _shown(path), self.server.generation)
                return None
        try:
            mesh = await asyncio.to_thread(load_mesh, path, None, self.cache)
        except MeshFileError as exc:
            for issue in exc.issues:
                log.error("%s", issue)
            count = len(exc.issues)
            log.warning("reload rejected: %d problem%s; still serving generation %d",
                        count, "" if count == 1 else "s", self.server.generation)
            self.rejected = True
            self.server.stats.reloads["rejected"] += 1
            return None
        if not _differs(self.mesh, mesh):
            self.mesh = mesh  # same definitions; the files it refers to may have moved
            # After a rejected edit, say the file is fine again; otherwise stay quiet.
            log.log(logging.INFO if self.rejected else logging.DEBUG,
                    "%s is valid again; no definition changed, still generation %d",
                    _shown(path), self.server.generation)
            self.rejected = False
            return None
        self._warn(mesh)
        loaded = time.perf_counter()
        try:
            change = await self.server.apply(mesh)
        except Exception as exc:  # NATS trouble: the next edit tries again
            log.error("reload failed while applying it: %s", exc or type(exc).__name__)
            self.server.stats.reloads["failed"] += 1
            return None
        self.mesh, self.rejected = mesh, False
        self.server.stats.reloads["ok"] += 1
        change = dataclasses.replace(change, seconds=time.perf_counter() - started)
        log.info("reloaded: %s", change.describe())
        log.debug("reload of generation %d: load %.1f ms, apply %.1f ms", change.generation,
                  (loaded - started) * 1000, (time.perf_counter() - loaded) * 1000)
        return change

    def _warn(self, mesh: Mesh) -> None:
        for warning in sorted(set(mesh.warnings) - set(self.mesh.warnings)):
            log.warning("%s", warning)
        if mesh.spec.nats != self.mesh.spec.nats:
            log.warning("the nats: settings changed; they apply at the next start of "
                        "mesh-runtime up")


async def watch_and_apply(server: MeshServer, mesh: Mesh, cache: LoadCache | None = None) -> None:
    """Apply every valid edit of the mesh's files until cancelled."""
    # What is loaded by now lives as long as the process: keep it out of the collector's
    # full passes, which would otherwise stall a reload of a big mesh for tens of ms.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    task = asyncio.create_task(Reloader(server, mesh, cache).run(stop))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug here must not take serving down with it
        log.error("hot reload stopped: %s: %s", type(exc).__name__, exc)
    finally:
        # watchfiles waits for events in a thread that only its stop event ends promptly;
        # a reload already under way finishes first.
        stop.set()
        with contextlib.suppress(Exception):
            await task


def _differs(old: Mesh, new: Mesh) -> bool:
    before, after = old.endpoints, new.endpoints
    return before.keys() != after.keys() or any(
        before[name].fingerprint != after[name].fingerprint for name in after)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)

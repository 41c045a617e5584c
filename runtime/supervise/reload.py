"""Hot reload: watch the mesh's files, load each edit whole, apply only the difference.

The loop has uvicorn's shape, `for changes in watcher: apply`. An invalid edit is
logged and changes nothing; a valid one goes through the same `MeshServer.apply` as
the start, which touches only what differs. (Edits of Python code are the
supervisor's: they start new workers, see supervisor.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import importlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from runtime.core.issues import MeshFileError
from runtime.load.loader import LoadCache, load_mesh
from runtime.load.mesh import Mesh
from runtime.serve.server import Change, MeshServer
from runtime.supervise.filewatch import FileWatch, shown

log = logging.getLogger("mesh-runtime")

MISSING_GRACE = 0.05  # a save by rename can leave the file missing for a moment


def _ignore(*_args: object) -> None:
    return None


@dataclass
class ReloadHooks:
    """What a worker adds to a reload: whether it logs it, and whom it tells."""

    announce: bool = True  # log each reload at info level (one worker of several does)
    applied: Callable[[Change], None] = field(default=_ignore)
    rejected: Callable[[], None] = field(default=_ignore)


class Reloader:
    """The last good mesh and the files it came from; applies each valid edit of them."""

    def __init__(self, server: MeshServer, mesh: Mesh, cache: LoadCache | None = None,
                 hooks: ReloadHooks | None = None,
                 also: Callable[[Mesh], Awaitable[object]] | None = None):
        self.server = server
        self.also = also  # what else applies each mesh (the triggers), after the server
        self.mesh = mesh
        self.cache = cache if cache is not None else LoadCache()
        self.hooks = hooks or ReloadHooks()
        self.rejected = False  # the last edit was invalid
        self.watch = FileWatch(lambda: self.mesh.watched_files,
                               since=self.cache.loaded_at or time.time())

    async def run(self, stop: asyncio.Event) -> None:
        """Reload on every burst of changes until `stop` is set."""
        async for _changed in self.watch.changes(stop):
            await self.reload()

    async def reload(self) -> Change | None:
        """Load the mesh file again and apply it if valid; the change applied, if any."""
        started = time.perf_counter()
        path = self.mesh.path
        if not path.exists():
            await asyncio.sleep(MISSING_GRACE)  # mid-rename: the new file is about to land
            if not path.exists():
                self._log(logging.WARNING, "%s is missing; still serving generation %d "
                          "(waiting for it to be written again)", shown(path),
                          self.server.generation)
                return None
        importlib.invalidate_caches()  # a handler module created since the start imports
        try:
            mesh = await asyncio.to_thread(load_mesh, path, None, self.cache)
        except MeshFileError as exc:
            for issue in exc.issues:
                self._log(logging.ERROR, "%s", issue)
            count = len(exc.issues)
            self._log(logging.WARNING, "reload rejected: %d problem%s; still serving "
                      "generation %d", count, "" if count == 1 else "s", self.server.generation)
            self.rejected = True
            self.server.stats.reloads["rejected"] += 1
            self.hooks.rejected()
            return None
        except Exception as exc:  # a file no check foresaw: still serve, and still watch
            log.error("reload failed: %s: %s; still serving generation %d",
                      type(exc).__name__, exc, self.server.generation)
            self.rejected = True
            self.server.stats.reloads["rejected"] += 1
            return None
        if not _differs(self.mesh, mesh):
            self.mesh = mesh  # same definitions; the files it refers to may have moved
            # After a rejected edit, say the file is fine again; otherwise stay quiet.
            self._log(logging.INFO if self.rejected else logging.DEBUG,
                      "%s is valid again; no definition changed, still generation %d",
                      shown(path), self.server.generation)
            self.rejected = False
            return None
        self._warn(mesh)
        loaded = time.perf_counter()
        try:
            change = await self.server.apply(mesh)
            if self.also is not None:
                await self.also(mesh)
        except Exception as exc:  # NATS trouble: the next edit tries again
            log.error("reload failed while applying it: %s", exc or type(exc).__name__)
            self.server.stats.reloads["failed"] += 1
            return None
        self.mesh, self.rejected = mesh, False
        self.server.stats.reloads["ok"] += 1
        change = dataclasses.replace(change, seconds=time.perf_counter() - started)
        self._log(logging.INFO, "reloaded: %s", change.describe())
        self.hooks.applied(change)
        log.debug("reload of generation %d: load %.1f ms, apply %.1f ms", change.generation,
                  (loaded - started) * 1000, (time.perf_counter() - loaded) * 1000)
        return change

    def _warn(self, mesh: Mesh) -> None:
        for warning in sorted(set(mesh.warnings) - set(self.mesh.warnings)):
            self._log(logging.WARNING, "%s", warning)
        if mesh.spec.nats != self.mesh.spec.nats:
            self._log(logging.WARNING, "the nats: settings changed; they apply at the next "
                      "start of mesh-runtime up")

    def _log(self, level: int, message: str, *args: object) -> None:
        """Log at `level`, or at debug in a worker that leaves reload news to another."""
        log.log(level if self.hooks.announce else logging.DEBUG, message, *args)


async def watch_and_apply(server: MeshServer, mesh: Mesh, cache: LoadCache | None = None,
                          hooks: ReloadHooks | None = None,
                          also: Callable[[Mesh], Awaitable[object]] | None = None) -> None:
    """Apply every valid edit of the mesh's files until cancelled."""
    # What is loaded by now lives as long as the process: keep it out of the collector's
    # full passes, which would otherwise stall a reload of a big mesh for tens of ms.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    task = asyncio.create_task(Reloader(server, mesh, cache, hooks, also).run(stop))
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

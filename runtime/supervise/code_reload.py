"""Code reload, the supervisor's part: edits in, generations out, one at a time.

Edits that come while a generation starts are coalesced (pending.py): the generation
is let finish (a cancelled start would leave its interpreters to be reaped while the
next ones import), then the next starts for whatever changed meanwhile. So at most
one generation is starting at any time, and a storm of saves ends with the last code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Protocol

from runtime.supervise.filewatch import FileWatch, python_files_beside, shown
from runtime.supervise.generations import Generation, GenerationFailed, Starter
from runtime.supervise.pending import PendingEdits

log = logging.getLogger("mesh-runtime")

RETIRE_SECONDS = 5.0  # a reload is logged once old workers take no requests, or after this
STALE = "code that the mesh file names, changed since the workers started"


class _Options(Protocol):
    workers: int  # how many workers a generation has


class CodeReload:
    """The supervisor's code reload (a part of `Supervisor`, which sets these)."""

    options: _Options
    stop: asyncio.Event
    starter: Starter
    watch: FileWatch
    serving: Generation | None
    generation: int
    _files: frozenset[Path]
    _broken: frozenset[Path]
    _pending: PendingEdits
    _reloading: asyncio.Task[None] | None
    _tasks: set[asyncio.Future[None]]

    def _watched(self) -> frozenset[Path]:
        return self._files | self._broken

    def _promote(self, generation: Generation) -> frozenset[Path]:
        raise NotImplementedError

    async def _watch_code(self) -> None:
        async for changed in self.watch.changes(self.stop):
            self._reload_code(changed)

    def _busy(self) -> bool:
        return self._reloading is not None and not self._reloading.done()

    def _reload_code(self, changed: set[Path] | None = None, stale: bool = False) -> None:
        """Note what changed; start generations for it, one at a time (coalesced: edits
        made while one starts are what the next one is for)."""
        self._pending.add(changed or (), stale)
        if not self._busy():
            self._reloading = asyncio.ensure_future(self._reload_loop())

    async def _reload_loop(self) -> None:
        while not self.stop.is_set() and (edits := self._pending.take()) is not None:
            await self._new_generation(*edits)

    async def _new_generation(self, changed: set[Path], stale: bool) -> None:
        began = time.perf_counter()
        number = self.generation + 1
        result = await self.starter.generation(
            number, self.options.workers, lambda: self._pending.read(self._watched()))
        files = sorted(shown(path) for path in changed)
        what = f"new code in {', '.join(files)}" if files else f"new workers for {STALE}"
        if isinstance(result, GenerationFailed):
            self._broken = python_files_beside(self._files)
            self.watch.rewatch(time.time())
            if self._pending.waiting():  # edited again since: the next generation says
                log.debug("generation %d did not start; newer code is next", number)
                return
            for line in result.lines:
                log.error("%s", line.removeprefix("error: "))
            log.warning("reload rejected: %s; still serving generation %d",
                        f"the new code in {', '.join(files)} does not load" if files
                        else f"new workers for {STALE} did not start", self.generation)
            return
        old = self.serving
        self._promote(result)
        retiring = asyncio.ensure_future(self._retire(old, result, number, what, began))
        self._tasks.add(retiring)
        retiring.add_done_callback(self._tasks.discard)

    async def _retire(self, old: Generation | None, new: Generation, number: int, what: str,
                      began: float) -> None:
        """Stop the old generation; say `reloaded` once only the new code gets requests."""
        if old is not None:
            for worker in old.workers:
                worker.terminate()  # it stops taking requests and finishes those in flight
            # Done once only the new code gets requests (the old may still finish some).
            waits = [asyncio.ensure_future(w.retired.wait()) for w in old.workers]
            _, late = await asyncio.wait(waits, timeout=RETIRE_SECONDS)
            for wait in late:
                wait.cancel()
        count = len(new.workers)
        log.info("reloaded: generation %d: %s (%d worker%s, %.0f ms)", number, what,
                 count, "" if count == 1 else "s", (time.perf_counter() - began) * 1000)


"""`mesh-runtime up` as a supervisor: it runs the workers that serve, and swaps them for new
code without losing a request.

The supervisor owns the embedded nats-server (if any), the watcher of the user's
Python files and `--workers N` worker processes, each a whole server with its own
connection. Workers of one `up` share every queue group, so NATS spreads requests
over them. An edit of the code starts a new generation of workers in fresh
interpreters; once every one of them serves (their subscriptions confirmed by the
server), the old ones stop taking requests, finish those in flight and exit. A
generation that cannot start changes nothing: the old one keeps serving. Edits of
mesh.yaml and schema files are the workers' own (reload.py): each applies the diff.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.supervise.control import EXIT_CONNECTION_LOST
from runtime.supervise.embedded_ahead import EmbeddedServer
from runtime.supervise.filewatch import FileWatch, modified_after, python_files_beside, shown
from runtime.supervise.generations import Generation, GenerationFailed, Starter
from runtime.supervise.startup import StartupError
from runtime.supervise.workers import WorkerProcess

log = logging.getLogger("mesh-runtime")

STOP_MARGIN = 5.0  # past the grace period, a worker that has not exited is killed
RETIRE_SECONDS = 5.0  # a reload is logged once old workers take no requests, or after this
STALE = "code that the mesh file names, changed since the workers started"


class WorkersFailed(Exception):
    """The workers cannot serve (the first could not start, or NATS closed a worker's
    connection for good); `lines` say why, as the CLI prints them."""

    def __init__(self, failure: GenerationFailed):
        super().__init__("\n".join(failure.lines))
        self.lines = failure.lines
        self.code = failure.code


@dataclass
class Options:
    argv: list[str]  # `up`'s own arguments: each worker runs `up` again with them
    file: Path = Path("mesh.yaml")
    nats: str | None = None  # --nats
    workers: int = 1
    reload: bool = True
    grace: float = 30.0
    metrics: tuple[str, int] | None = None  # (host, port) to serve every worker's metrics on


class Supervisor:
    """The workers of one `up`, generation after generation, until SIGINT or SIGTERM."""

    def __init__(self, options: Options):
        self.options = options
        self.stop = asyncio.Event()
        self.starter = Starter(options.argv, self._on_message, spare=options.reload)
        self.serving: Generation | None = None
        self.generation = 0  # the latest generation number a serving worker reported
        self.embedded = EmbeddedServer()
        self.watch = FileWatch(self._watched, since=time.time())
        self._files: frozenset[Path] = frozenset()  # the user's code the workers run
        self._broken: frozenset[Path] = frozenset()  # after new code failed: its folders' files
        self._pending: set[str] = set()  # what changed since the last generation started
        self._reloading: asyncio.Task[None] | None = None
        self._replacing: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Future[None]] = set()  # answers to workers, under way
        self._lost = False  # a new worker could not reach NATS: `up` exits

    async def run(self) -> None:
        """Serve until a signal; raises WorkersFailed when the first generation fails."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        watching: asyncio.Task[None] | None = None
        metrics = self._serve_metrics()  # first: a taken port stops `up` before it serves
        try:
            first = asyncio.ensure_future(self.starter.generation(1, self.options.workers))
            self.embedded.start_ahead(self.options.file, self.options.nats)  # meanwhile
            await _either(first, self.stop)
            if first.done():
                result = first.result()
                if isinstance(result, GenerationFailed):
                    raise WorkersFailed(result)
                self._promote(result)
                await self.embedded.drop_unasked()
                report = result.workers[0].report
                several = self.options.workers
                log.info("ready: %d agents, %d pipelines on %s%s", report["agents"],
                         report["pipelines"], report["url"],
                         f" ({several} workers)" if several > 1 else "")
                if self.options.reload:
                    watching = asyncio.ensure_future(self._watch_code())
                await self.stop.wait()
            else:
                first.cancel()
            log.info("stopping: finishing requests in flight (at most %gs)", self.options.grace)
            await self._stop_workers()
            log.info("stopped")
            if self._lost:  # the worker said why
                raise WorkersFailed(GenerationFailed([], EXIT_CONNECTION_LOST))
        finally:
            self.stop.set()
            for task in (watching, self._reloading, *self._replacing.values()):
                if task is not None:
                    task.cancel()
            await self._stop_workers()
            if metrics is not None:
                metrics.shutdown()
            await self.embedded.stop()

    def _serve_metrics(self) -> Any:
        if self.options.metrics is None:
            return None
        from runtime.supervise.metrics_sum import serve_summed_metrics

        host, port = self.options.metrics
        return serve_summed_metrics(self._metrics_ports, host, port)

    def _metrics_ports(self) -> list[int]:
        serving = self.serving  # read from the metrics server's thread: take it once
        ports = [w.report.get("metrics_port") for w in serving.workers] if serving else []
        return [p for p in ports if isinstance(p, int)]

    # -- what the workers say ---------------------------------------------------------

    def _on_message(self, worker: WorkerProcess, message: dict[str, Any]) -> None:
        kind = message.get("kind")
        if kind == "embedded":
            task = asyncio.ensure_future(self._give_embedded(worker, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind == "reloaded" and self._serves(worker):
            self.generation = max(self.generation, int(message.get("generation", 0)))
            self._refresh_files()
        elif kind == "stale" and self._serves(worker) and not self._busy():
            self._reload_code({STALE})

    async def _give_embedded(self, worker: WorkerProcess, ask: dict[str, Any]) -> None:
        try:
            url = await self.embedded.url(int(ask.get("port") or 0), ask.get("store_dir"),
                                          Path(ask.get("folder") or "."))
        except StartupError as exc:
            worker.reply("nats", error=str(exc))
            return
        worker.reply("nats", url=url)

    def _serves(self, worker: WorkerProcess) -> bool:
        return self.serving is not None and worker in self.serving.workers

    # -- code reload ------------------------------------------------------------------

    def _watched(self) -> frozenset[Path]:
        return self._files | self._broken

    def _refresh_files(self) -> None:
        before = {f.parent for f in self._watched()}
        self._files = frozenset().union(*(w.files for w in self.serving.workers)) \
            if self.serving else frozenset()
        if not {f.parent for f in self._watched()} <= before:
            self.watch.rewatch(time.time())  # a folder more to watch

    async def _watch_code(self) -> None:
        async for changed in self.watch.changes(self.stop):
            self._reload_code({shown(path) for path in changed})

    def _busy(self) -> bool:
        return self._reloading is not None and not self._reloading.done()

    def _reload_code(self, what: set[str]) -> None:
        """Start a new generation for `what` changed; one already starting is dropped for it
        (it may have read the files before this edit)."""
        self._pending |= what
        if self._busy():
            assert self._reloading is not None
            self._reloading.cancel()
        self._reloading = asyncio.ensure_future(self._new_generation())

    async def _new_generation(self) -> None:
        began = time.perf_counter()
        number = self.generation + 1
        result = await self.starter.generation(number, self.options.workers)
        files = sorted(self._pending - {STALE})
        what = f"new code in {', '.join(files)}" if files else f"new workers for {STALE}"
        self._pending.clear()
        if isinstance(result, GenerationFailed):
            for line in result.lines:
                log.error("%s", line.removeprefix("error: "))
            log.warning("reload rejected: %s; still serving generation %d",
                        f"the new code in {', '.join(files)} does not load" if files
                        else f"new workers for {STALE} did not start", self.generation)
            self._broken = python_files_beside(self._files)
            self.watch.rewatch(time.time())
            return
        old = self.serving
        new_files = self._promote(result)
        self._reloading = None  # swapped in: an edit from now on starts the next generation
        if old is not None:
            for worker in old.workers:
                worker.terminate()  # it stops taking requests and finishes those in flight
            # Done once only the new code gets requests (the old may still finish some).
            waits = [asyncio.ensure_future(w.retired.wait()) for w in old.workers]
            _, late = await asyncio.wait(waits, timeout=RETIRE_SECONDS)
            for wait in late:
                wait.cancel()
        count = len(result.workers)
        log.info("reloaded: generation %d: %s (%d worker%s, %.0f ms)", number, what,
                 count, "" if count == 1 else "s", (time.perf_counter() - began) * 1000)
        touched = [f for f in new_files if modified_after(f, result.started)]
        if touched:  # code it imported for the first time changed while it started
            self._reload_code({shown(path) for path in touched})

    def _promote(self, generation: Generation) -> frozenset[Path]:
        """Make `generation` the serving one; returns files it runs that were not watched."""
        for task in self._replacing.values():
            task.cancel()
        self._replacing.clear()
        before = self._files
        self.serving = generation
        self.generation = max([generation.number, *(int(w.report.get("generation", 0))
                                                     for w in generation.workers)])
        for worker in generation.workers:
            self._watch_exit(worker)
        self._broken = frozenset()
        self._refresh_files()
        self.watch.rewatch(time.time())
        self.starter.keep_spare()
        return self._files - before

    # -- workers that die -------------------------------------------------------------

    def _watch_exit(self, worker: WorkerProcess) -> None:
        worker.exited.add_done_callback(lambda _: self._on_exit(worker))

    def _on_exit(self, worker: WorkerProcess) -> None:
        # Whatever its exit status (a handler's os._exit(3) included, or NATS closing its
        # connection), one worker's end is that worker's: it is replaced, and the others
        # serve on. Only the replacement failing to reach NATS makes `up` stop.
        if self.stop.is_set() or worker.retiring or not self._serves(worker):
            return
        self._replacing[worker.index] = asyncio.ensure_future(self._bring_back(worker))

    async def _bring_back(self, dead: WorkerProcess) -> None:
        """Start a worker in the place of one that died (backed off if they keep dying)."""
        log.warning("%s stopped unexpectedly (%s); starting a new one", dead, dead.exit_reason())
        worker = await self.starter.replace(dead, lambda: self.generation, self.stop)
        if isinstance(worker, GenerationFailed):  # NATS is gone: `up` exits, for an outer
            for line in worker.lines:             # supervisor to restart when it makes sense
                log.error("%s", line.removeprefix("error: "))
            self._lost = True
            self.stop.set()
            return
        if worker is not None and self.serving is not None:
            self.serving.workers[dead.index] = worker
            self._watch_exit(worker)
            log.info("%s serves in place of pid %d", worker, dead.pid)
            self.starter.keep_spare()

    async def _stop_workers(self) -> None:
        """SIGTERM to every worker; wait for them (requests in flight finish); then kill."""
        await self.starter.stop_all(self.options.grace + STOP_MARGIN)


async def _either(task: asyncio.Future[Any], event: asyncio.Event) -> None:
    waiting = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()

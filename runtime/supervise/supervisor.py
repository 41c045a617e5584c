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

from runtime.supervise.code_reload import CodeReload
from runtime.supervise.control import EXIT_CONNECTION_LOST
from runtime.supervise.embedded_ahead import EmbeddedServer
from runtime.supervise.filewatch import FileWatch, modified_after
from runtime.supervise.generations import Generation, GenerationFailed, Starter
from runtime.supervise.pending import PendingEdits
from runtime.supervise.startup import StartupError
from runtime.supervise.stopping import EXIT_ABANDONED, Stopping
from runtime.supervise.workers import WorkerProcess

log = logging.getLogger("mesh-runtime")

STOP_MARGIN = 5.0  # past the grace period, a worker that has not exited is killed


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


class Supervisor(CodeReload):
    """The workers of one `up`, generation after generation, until SIGINT or SIGTERM."""

    options: Options

    def __init__(self, options: Options):
        self.options = options
        self.stop = asyncio.Event()
        self.starter = Starter(options.argv, self._on_message, spare=options.reload,
                               stop_timeout=options.grace + STOP_MARGIN)
        self.serving: Generation | None = None
        self.generation = 0  # the latest generation number a serving worker reported
        self.embedded = EmbeddedServer()
        self.watch = FileWatch(self._watched, since=time.time())
        self._files: frozenset[Path] = frozenset()  # the user's code the workers run
        self._broken: frozenset[Path] = frozenset()  # after new code failed: its folders' files
        self._pending = PendingEdits()  # what changed since the last generation started
        self._reloading: asyncio.Task[None] | None = None
        self._replacing: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Future[None]] = set()  # answers to workers, under way
        self._lost = False  # a new worker could not reach NATS: `up` exits
        self.stopping = Stopping()
        self.exit_code = 0

    async def run(self) -> None:
        """Serve until a signal; raises WorkersFailed when the first generation fails."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._signalled)
        watching: asyncio.Task[None] | None = None
        metrics = self._serve_metrics()  # first: a taken port stops `up` before it serves
        try:
            first = asyncio.ensure_future(self.starter.generation(1, self.options.workers))
            # (its files are known once it serves: _promote records what it read)
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
            stopping = asyncio.ensure_future(self._stop_workers())  # SIGTERM: they report
            await self.stopping.say_what_it_waits_for([w.pid for w in self.starter.alive
                                                       if self._serves(w)], self.options.grace)
            await stopping
            log.info("stopped")
            if self.stopping.abandoned:
                self.exit_code = EXIT_ABANDONED
            if self._lost:  # the workers said why
                raise WorkersFailed(GenerationFailed([], EXIT_CONNECTION_LOST))
        finally:
            self.stop.set()
            for task in (watching, self._reloading, *self._replacing.values(), *self._tasks):
                if task is not None:
                    task.cancel()
            await self._stop_workers()
            if metrics is not None:
                metrics.shutdown()
            await self.embedded.stop()

    def _signalled(self) -> None:
        """SIGINT or SIGTERM: stop, finishing requests in flight; a second: stop at once."""
        if not self.stop.is_set():
            self.stop.set()
        elif not self.stopping.abandoned:
            running = [w for w in self.starter.alive if w.process.returncode is None]
            self.stopping.abandon([w.pid for w in running])
            for worker in running:
                worker.kill()

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
        elif kind == "in_flight":
            self.stopping.report(worker.pid, int(message.get("count") or 0))
        elif kind == "reloaded" and self._serves(worker):
            self.generation = max(self.generation, int(message.get("generation", 0)))
            self._refresh_files()
        elif kind == "stale" and self._serves(worker) and not self._busy():
            self._reload_code(stale=True)

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

    def _refresh_files(self) -> None:
        before = {f.parent for f in self._watched()}
        self._files = frozenset().union(*(w.files for w in self.serving.workers)) \
            if self.serving else frozenset()
        if not {f.parent for f in self._watched()} <= before:
            self.watch.rewatch(time.time())  # a folder more to watch

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
        # Code it imported for the first time is what it read, unless changed while it started.
        new_files = self._files - before
        touched = {f for f in new_files if modified_after(f, generation.started)}
        self._pending.read(new_files - touched)
        if touched and self.options.reload:
            self._reload_code(touched)
        return new_files

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

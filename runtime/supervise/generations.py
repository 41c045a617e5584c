"""Starting workers: one at a time or a whole generation, from a spare kept ready.

Most of a worker's start is the interpreter importing the runtime and its libraries,
none of which is the user's code; so, with reload on, one spare worker is always
spawned ahead of need, imported and waiting. A new generation starts from it and
loads the user's code at that moment, which brings a code edit to serving sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from runtime.supervise.workers import OnMessage, WorkerProcess

log = logging.getLogger("mesh-runtime")

FAILURE_READ_SECONDS = 2.0  # how long the report of a worker that exited may take to arrive
FIRST_BACKOFF = 0.5  # seconds before restarting a worker that died soon after it started
MAX_BACKOFF = 30.0  # the wait doubles with each quick death, up to this
STABLE_SECONDS = 10.0  # a worker that served this long before dying is restarted at once


@dataclass
class Generation:
    """Workers started together, all serving."""

    number: int
    workers: list[WorkerProcess]
    started: float  # when they were told to load the user's code (time.time())


@dataclass
class GenerationFailed:
    """A worker exited before it served; `lines` say why, as the CLI would print them."""

    lines: list[str]
    code: int
    unreachable: bool = False  # it could not connect to NATS (or its login was refused)


class Starter:
    """Spawns and starts workers, keeps one spare, and stops every one it started."""

    def __init__(self, argv: list[str], on_message: OnMessage, spare: bool,
                 stop_timeout: float = 35.0):
        self.argv = argv
        self.stop_timeout = stop_timeout  # SIGTERM, then this long, then SIGKILL
        self.on_message = on_message
        self.want_spare = spare
        self.alive: set[WorkerProcess] = set()
        self._spare: asyncio.Task[WorkerProcess] | None = None

    async def _spawn(self) -> WorkerProcess:
        worker = await WorkerProcess.spawn(self.argv, self.on_message)
        self.alive.add(worker)
        worker.exited.add_done_callback(lambda _: self._gone(worker))
        return worker

    def _gone(self, worker: WorkerProcess) -> None:
        self.alive.discard(worker)

    def keep_spare(self) -> None:
        """Spawn a spare worker (imports, then waits) unless one is there already."""
        if self.want_spare and self._spare is None:
            self._spare = asyncio.ensure_future(self._spawn())

    async def _take(self) -> WorkerProcess:
        spare, self._spare = self._spare, None
        if spare is not None:
            with contextlib.suppress(Exception):
                worker = await spare
                if worker.process.returncode is None:
                    return worker
        return await self._spawn()

    async def generation(self, number: int, count: int,
                         before_start: Callable[[], None] | None = None
                         ) -> Generation | GenerationFailed:
        """`count` workers serving generation `number`, or why they could not: then none
        of them is left running (every one has exited). `before_start` is called just
        before they are told to load the user's code, all at once."""
        workers: list[WorkerProcess] = []
        try:
            for _ in range(count):
                workers.append(await self._take())
            if before_start is not None:
                before_start()
            for index, worker in enumerate(workers):
                worker.start(index, number, announce=index == 0)
            started = min(w.started_at for w in workers)
            waits = {asyncio.ensure_future(w.wait_ready()): w for w in workers}
            while waits:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for finished in done:
                    failed = waits.pop(finished)
                    if not finished.result():
                        for wait in waits:
                            wait.cancel()
                        _retire(workers)
                        failure = await _failure(failed)
                        await self.reap(workers)
                        return failure
            return Generation(number, workers, started)
        except BaseException:
            _retire(workers)
            raise

    async def one(self, index: int, generation: int) -> WorkerProcess | GenerationFailed:
        """One worker in slot `index`, serving; or why it could not."""
        worker = await self._take()
        try:
            worker.start(index, generation, announce=index == 0)
            if await worker.wait_ready():
                return worker
        except BaseException:
            _retire([worker])
            raise
        return await _failure(worker)

    async def replace(self, dead: WorkerProcess, generation: Callable[[], int],
                      stop: asyncio.Event) -> WorkerProcess | GenerationFailed | None:
        """A worker serving in the slot of `dead`; None if `stop` came first; why not, when
        the new one cannot reach NATS (the supervisor's sign that NATS is gone). While new
        ones keep dying otherwise, the wait before the next try doubles (up to 30 s)."""
        quick = 0 if time.time() - dead.started_at >= STABLE_SECONDS else 1
        while not stop.is_set():
            if quick:
                delay = min(FIRST_BACKOFF * 2 ** (quick - 1), MAX_BACKOFF)
                log.warning("worker %d keeps stopping; next try in %g s", dead.index + 1, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                    return None
            result = await self.one(dead.index, generation())
            if isinstance(result, WorkerProcess) or result.unreachable:
                return result
            for line in result.lines:
                log.error("%s", line.removeprefix("error: "))
            quick += 1
        return None

    async def reap(self, workers: list[WorkerProcess]) -> None:
        """SIGTERM to `workers`, and wait until every one has exited (SIGKILL past the
        stop timeout): a generation that did not serve is gone before the next starts."""
        _retire(workers)
        waits = [w.exited for w in workers if not w.exited.done()]
        if waits:
            _, late = await asyncio.wait(waits, timeout=self.stop_timeout)
            if late:
                for worker in workers:
                    worker.kill()
                await asyncio.wait(late)

    async def stop_all(self, timeout: float) -> None:
        """SIGTERM to every worker; after `timeout` seconds, SIGKILL to those left."""
        if self._spare is not None:
            with contextlib.suppress(Exception):
                await self._spare  # a spawn under way: let it finish, then stop it too
        _retire(list(self.alive))
        waits = [w.exited for w in self.alive]
        if waits:
            _, late = await asyncio.wait(waits, timeout=timeout)
            if late:
                for worker in list(self.alive):
                    worker.kill()
                await asyncio.wait(late)


def _retire(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        worker.terminate()


async def _failure(worker: WorkerProcess) -> GenerationFailed:
    await worker.read_all(FAILURE_READ_SECONDS)
    if worker.failure is not None:
        return GenerationFailed(list(worker.failure["lines"]), int(worker.failure["code"]),
                                worker.failure.get("unreachable") is True)
    return GenerationFailed(
        [f"error: {worker} stopped before it served ({worker.exit_reason()})"], 1)

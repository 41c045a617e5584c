"""A worker's side of the line to its supervisor (see control.py for the messages)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.serve.server import Change
from runtime.supervise.control import Channel
from runtime.supervise.filewatch import modified_after
from runtime.supervise.reload import ReloadHooks

RUNTIME_HOME = Path(__file__).resolve().parent.parent  # our own code is not the user's


@dataclass(frozen=True)
class WorkerStart:
    """What the supervisor tells a worker when it is to load the mesh and serve."""

    index: int
    generation: int  # the number its first apply of the mesh takes
    announce: bool  # it logs what the whole `up` would say once (ready, reloads, problems)


class WorkerLink:
    """The open line: the start order, the embedded server's URL, and reports back."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.closed = asyncio.Event()  # the supervisor is gone: stop serving
        self.start = WorkerStart(0, 1, True)
        self.started_at = time.time()  # user code imported after this is what it runs
        self.folder = Path.cwd()
        self.handler_files: frozenset[Path] = frozenset()
        self._nats: asyncio.Future[dict[str, str]] | None = None
        self._when_closed: list[Callable[[], None]] = []
        self._reading: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, fd: int) -> WorkerLink:
        """Connect, then wait for the supervisor's start order."""
        os.set_inheritable(fd, False)  # a handler's child processes must not hold it open
        link = cls(await Channel.open(socket.socket(fileno=fd)))
        message = await link.channel.receive()
        if message is None or message.get("kind") != "start":
            raise ConnectionError("the supervisor went away before starting this worker")
        link.start = WorkerStart(int(message["index"]), int(message["generation"]),
                                 bool(message["announce"]))
        link.started_at = time.time()
        link._reading = asyncio.ensure_future(link._read())
        return link

    async def _read(self) -> None:
        while (message := await self.channel.receive()) is not None:
            if message.get("kind") == "nats" and self._nats and not self._nats.done():
                self._nats.set_result(message)
        self.closed.set()
        for callback in self._when_closed:
            callback()

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the supervisor is gone (its end of the line closed)."""
        self._when_closed.append(callback)
        if self.closed.is_set():
            callback()

    async def embedded(self, port: int, store_dir: str | None, folder: Path) -> str:
        """The URL of the supervisor's embedded server (started on the first ask)."""
        self._nats = asyncio.get_running_loop().create_future()
        self.channel.send("embedded", port=port, store_dir=store_dir, folder=str(folder))
        waiting: asyncio.Future[Any] = asyncio.ensure_future(self.closed.wait())
        await asyncio.wait([self._nats, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not self._nats.done():
            raise ConnectionError("the supervisor went away")
        answer = self._nats.result()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer["url"]

    def ready(self, agents: int, pipelines: int, url: str, generation: int,
              folder: Path, handler_files: frozenset[Path], metrics_port: int | None) -> None:
        self.folder, self.handler_files = folder, handler_files
        self.channel.send("ready", agents=agents, pipelines=pipelines, url=url,
                          generation=generation, files=self.code_files(),
                          metrics_port=metrics_port)

    async def failed(self, lines: list[str], code: int, unreachable: bool = False) -> None:
        """Say why this worker cannot serve (the supervisor shows it once), before exiting;
        `unreachable`: NATS did not answer or refused the login."""
        self.channel.send("failed", lines=lines, code=code, unreachable=unreachable)
        with contextlib.suppress(ConnectionError):
            await self.channel.writer.drain()

    def in_flight(self, count: int) -> None:
        """Stopping: how many requests this worker has yet to answer (see stopping.py)."""
        self.channel.send("in_flight", count=count)

    def stopped_taking(self) -> None:
        """NATS routes no new request here any more: the swap to new workers is complete."""
        self.channel.send("retired")

    def hooks(self) -> ReloadHooks:
        """How this worker's mesh reloads are logged and reported."""
        return ReloadHooks(announce=self.start.announce, applied=self._applied,
                           rejected=self._rejected)

    def _applied(self, change: Change) -> None:
        self.channel.send("reloaded", generation=change.generation, files=self.code_files())

    def _rejected(self) -> None:
        # A name this interpreter cannot see may be in a newer version of a module it
        # imported long ago: a fresh interpreter (a new generation) would see it.
        if any(modified_after(path, self.started_at) for path in user_modules()):
            self.channel.send("stale")

    def code_files(self) -> list[str]:
        """The user's Python files this worker runs: the handler modules and every
        module it imported from under the mesh file's folder."""
        return sorted(str(path) for path in user_modules()
                      if path.is_relative_to(self.folder) or path in self.handler_files)


def user_modules() -> list[Path]:
    """Source files of imported modules that are neither Python's, installed, nor ours."""
    found = []
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file or not file.endswith(".py"):
            continue
        path = Path(file).resolve()
        if not any(path.is_relative_to(root) for root in _not_user_code()):
            found.append(path)
    return found


@functools.cache
def _not_user_code() -> frozenset[Path]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix,
             *(sysconfig.get_path(name) for name in ("stdlib", "purelib", "platlib"))}
    return frozenset({Path(root).resolve() for root in roots if root} | {RUNTIME_HOME})

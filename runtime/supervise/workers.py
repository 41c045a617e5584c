"""One worker process as the supervisor sees it: spawned, started, reporting, retired."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.core.lifeline import die_with_parent, kill_group
from runtime.supervise.control import WORKER_ENV, Channel

OnMessage = Callable[["WorkerProcess", dict[str, Any]], None]


class WorkerProcess:
    """A fresh interpreter running `up` as a worker, with its line to the supervisor.

    It is spawned ahead of need (importing takes most of a start) and loads the mesh
    only when `start` tells it to, so the code it runs is the code on disk then.
    """

    def __init__(self, process: asyncio.subprocess.Process, channel: Channel,
                 on_message: OnMessage):
        self.process = process
        self.channel = channel
        self.on_message = on_message
        self.index = -1
        self.started_at = 0.0  # when it was told to load the mesh (time.time())
        self.retiring = False  # told to stop: its exit is expected
        self.report: dict[str, Any] = {}  # its `ready` message
        self.failure: dict[str, Any] | None = None  # its `failed` message: why it could not
        self.files: frozenset[Path] = frozenset()  # the user's code it runs
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.retired = asyncio.Event()  # it takes no new requests (or has exited)
        self.exited = asyncio.ensure_future(process.wait())
        # What a handler forked (at import or later) ends with the worker: its group goes.
        self.exited.add_done_callback(lambda _: kill_group(process.pid))
        self._reading = asyncio.ensure_future(self._read())

    @classmethod
    async def spawn(cls, argv: list[str], on_message: OnMessage) -> WorkerProcess:
        """Start `python -m runtime ARGV` as a worker (in its own process group, so a
        Ctrl-C reaches the supervisor alone, which stops the workers in order). It gets
        SIGHUP when the supervisor dies, and then kills its group (worker_main.py)."""
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "runtime", *argv, stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),), process_group=0,
                preexec_fn=die_with_parent(signal.SIGHUP),
                env={**os.environ, WORKER_ENV: str(theirs.fileno())})
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(process, await Channel.open(ours), on_message)

    @property
    def pid(self) -> int:
        return self.process.pid

    def __str__(self) -> str:
        return f"worker {self.index + 1} (pid {self.pid})"

    def start(self, index: int, generation: int, announce: bool) -> None:
        """Load the mesh and serve it; its first apply is generation `generation`."""
        self.index, self.started_at = index, time.time()
        self.channel.send("start", index=index, generation=generation, announce=announce)

    async def _read(self) -> None:
        try:
            await self._read_messages()
        finally:
            self.retired.set()
            self.channel.close()

    async def _read_messages(self) -> None:
        while (message := await self.channel.receive()) is not None:
            kind = message.get("kind")
            if kind in ("ready", "reloaded"):
                self.files = frozenset(Path(f) for f in message.get("files") or ())
            if kind == "ready" and not self.ready.done():
                self.report = message
                self.ready.set_result(None)
            elif kind == "failed":
                self.failure = message
            elif kind == "retired":
                self.retired.set()
            self.on_message(self, message)

    async def wait_ready(self) -> bool:
        """True once it serves; False if it exited first."""
        either: list[asyncio.Future[Any]] = [self.ready, self.exited]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        return self.ready.done()

    async def read_all(self, timeout: float) -> None:
        """Wait (up to `timeout`) until everything it sent before exiting has been read."""
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._reading), timeout)

    def reply(self, kind: str, **fields: Any) -> None:
        self.channel.send(kind, **fields)

    def terminate(self) -> None:
        """Stop taking requests, finish those in flight, exit (SIGTERM)."""
        self.retiring = True
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self.retiring = True
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def exit_reason(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

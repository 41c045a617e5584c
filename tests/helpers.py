"""Test helpers: write a mesh folder, run the CLI the way a user does."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A text log line's prefix: the UTC time, and the level when it is `info`.
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?:info: )?")


def message_of(line: str) -> str:
    """A log line without its timestamp (and without `info: `): what tests compare."""
    return _LOG_PREFIX.sub("", line, count=1)


def free_port() -> int:
    """A loopback port free right now (for servers that need a port known in advance)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_mesh(folder: Path, text: str, handlers: str | None = None) -> tuple[Path, str]:
    """Write mesh.yaml (and a uniquely named handler module); returns (path, module name).

    `{mod}` in the text is replaced by the module name, unique per call so that
    Python's module cache never serves one test's handlers to another.
    """
    module = f"handlers_{uuid.uuid4().hex[:8]}"
    if handlers is not None:
        (folder / f"{module}.py").write_text(textwrap.dedent(handlers))
    path = folder / "mesh.yaml"
    path.write_text(textwrap.dedent(text).lstrip().replace("{mod}", module))
    return path, module


def cli(*args: str, cwd: Path | None = None, input: str | None = None,
        env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `mesh-runtime ARGS` as a separate process, as a user's shell would.

    Standard input is empty unless `input` is given (`call` reads a piped one)."""
    stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args], cwd=cwd or ROOT, **stdin,  # type: ignore[call-overload]
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...), from Linux /proc."""
    found, todo = [], [pid]
    while todo:
        for child in children_of(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    """Whether `pid` is a process that runs (a zombie waiting for its parent does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def command_line(pid: int) -> str:
    """What `ps` shows for `pid`."""
    return _cmdline(pid).replace(b"\0", b" ").decode(errors="replace").strip()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class UpProcess:
    """A real `mesh-runtime up` process; waits on its log lines, never on a sleep."""

    def __init__(self, mesh: Path, nats_url: str | None, *extra: str,
                 env: dict[str, str] | None = None, new_session: bool = False):
        args = [sys.executable, "-m", "runtime", "up", "-f", str(mesh), *extra]
        if nats_url:
            args += ["--nats", nats_url]
        self.lines: list[str] = []  # each line as message_of gives it
        self.raw_lines: list[str] = []  # each line as written
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            args, cwd=mesh.parent, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            start_new_session=new_session)  # its own process group, as a terminal's job
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.raw_lines.append(line.rstrip("\n"))
                self.lines.append(message_of(self.raw_lines[-1]))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 20, start: int = 0) -> str:
        """The first log line from index `start` on that contains `text`; fails on exit."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._pending()):
                    raise AssertionError(f"no log line with {text!r}; log:\n" + self.log)
                self._changed.wait(min(left, 0.2))

    def _pending(self) -> bool:
        return bool(self.process.stdout and not self.process.stdout.closed
                    and self.process.poll() is None)

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the process (by its PID) and wait for it to exit; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def worker_pids(self) -> list[int]:
        """Its worker processes (the spare one included, when reload is on)."""
        return [pid for pid in children_of(self.process.pid)
                if b"runtime" in _cmdline(pid)]

    @property
    def worker_pid(self) -> int:
        """The pid of its one worker (`--workers 1 --no-reload`: no spare)."""
        [pid] = self.worker_pids()
        return pid

    def crash(self) -> None:
        """Kill `up` and every process it started at once (SIGKILL), as a machine's crash
        would: nothing gets to leave the mesh cleanly."""
        self.process.send_signal(signal.SIGSTOP)  # so it starts no worker meanwhile
        for pid in children_of(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.kill()
        self.process.wait(10)

    def __enter__(self) -> UpProcess:
        self.wait_for("ready:")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Processes for the benchmarks: the NATS server, peer children, and the machine line.

Every child is started here and stopped by its own PID (SIGTERM, then SIGKILL); a
`Children` context manager stops all of them on the way out, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PEERS_DIR = BENCH_DIR / "peers"


def import_runtime() -> None:
    """Make the repo's `runtime` package importable when run as `python benchmarks/x.py`."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def start_nats() -> Any:
    """One JetStream-enabled nats-server on a free loopback port (a runtime.NatsServer)."""
    import_runtime()
    from runtime.nats.embedded import NatsServer

    return NatsServer(port=0, jetstream=True).start()


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child: unbuffered, repo importable, no NATS_URL leaking in."""
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def mesh_runtime_argv() -> list[str] | None:
    """The `mesh-runtime` console script next to this Python, else on PATH, else None."""
    local = Path(sys.executable).parent / "mesh-runtime"
    if local.exists():
        return [str(local)]
    found = shutil.which("mesh-runtime")
    return [found] if found else None


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> int | None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL; returns the exit code.

    Processes it started (an embedded nats-server, workers) that outlive it are stopped
    the same way, by PID, and counted in `orphans_stopped`.
    """
    if proc.poll() is None:
        family = descendants(proc.pid)
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in family:
            if _stop_pid(pid, grace):
                orphans_stopped.append(pid)
    return proc.returncode


orphans_stopped: list[int] = []  # PIDs left running by a child after it exited


def orphan_notes() -> list[str]:
    """A line for the report when a child left processes behind (we stopped them)."""
    if not orphans_stopped:
        return []
    return [
        f"note: {len(orphans_stopped)} process(es) outlived the child that started them "
        "(e.g. an embedded nats-server after SIGTERM); the benchmark stopped them by PID"
    ]


def _stop_pid(pid: int, grace: float) -> bool:
    """SIGTERM a PID that is not our child, then SIGKILL; True when it was still running."""
    if not _running(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _running(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited


@dataclass
class Child:
    """A child process whose output goes to a log file (no pipe to fill up)."""

    name: str
    argv: Sequence[str]
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=child_env)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self, log_dir: Path) -> Child:
        self.log_path = log_dir / f"{self.name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                list(self.argv),
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def exit_code(self) -> int | None:
        """None while it runs (or was never started)."""
        return self.proc.poll() if self.proc is not None else None

    def last_line(self) -> str:
        """The last line it printed: for a crash, usually the exception."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return lines[-1].strip() if lines else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


class Children:
    """Starts children into one temporary log folder and stops them all on exit."""

    def __init__(self) -> None:
        self._logs = tempfile.TemporaryDirectory(prefix="mesh-bench-")
        self._started: list[Child] = []

    def start(self, child: Child) -> Child:
        self._started.append(child)
        return child.start(Path(self._logs.name))

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for child in reversed(self._started):
            child.stop()
        self._logs.cleanup()


def python_child(name: str, script: Path, *args: str) -> Child:
    """A peer script run by this same Python."""
    return Child(name, [sys.executable, str(script), *args])


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, user+system CPU seconds), from Linux /proc; empty elsewhere."""
    table: dict[int, tuple[int, float]] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        table[int(entry.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def _tree(pid: int, table: dict[int, tuple[int, float]]) -> set[int]:
    tree = {pid}
    while grown := {p for p, (parent, _) in table.items() if parent in tree} - tree:
        tree |= grown
    return tree


def descendants(pid: int) -> list[int]:
    return sorted(_tree(pid, _proc_table()) - {pid})


def cpu_seconds(pid: int | None) -> float | None:
    """User+system CPU seconds of a process and its descendants (Linux /proc), else None."""
    table = _proc_table()
    if pid is None or pid not in table:
        return None
    return sum(table[p][1] for p in _tree(pid, table))


def machine_line() -> str:
    impl = platform.python_implementation()
    return (
        f"machine: {os.cpu_count()} cores, {platform.platform()}, "
        f"{impl} {platform.python_version()}, nats-server {nats_server_version()}"
    )


def nats_server_version() -> str:
    import_runtime()
    from runtime.nats.embedded import find_binary

    try:
        out = subprocess.run(
            [find_binary(), "--version"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired, RuntimeError):
        return "?"
    return out.stdout.strip().rsplit(" ", 1)[-1] or "?"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned first column, right-aligned numbers; a row of one cell spans the rest."""
    widths = [len(h) for h in header]
    for row in rows:
        widths[0] = max(widths[0], len(row[0]))
        if len(row) == len(header):
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        if len(cells) != len(header):
            return f"{cells[0]:<{widths[0]}}  " + "  ".join(cells[1:])
        first = f"{cells[0]:<{widths[0]}}"
        rest = [f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def raw_peer(url: str, name: str = "bench.raw", io: bool = False) -> Child:
    """The raw responder; with `io`, it also serves NAME-io (1 ms of simulated I/O)."""
    extra = ["--io"] if io else []
    return python_child(f"raw-{name}", PEERS_DIR / "raw_responder.py", url, name, *extra)


def oam_peer(url: str, io: bool = False) -> Child:
    """The OpenAgentMesh peer; with `io`, it also serves bench.oam-io."""
    return python_child("oam", PEERS_DIR / "oam_echo.py", url, *(["--io"] if io else []))


def mesh_peer(url: str, mesh_file: Path) -> Child | str:
    """`mesh-runtime up` on a mesh file, or the reason it cannot be run."""
    argv = mesh_runtime_argv()
    if argv is None:
        return "the mesh-runtime command is not installed (pip install -e .)"
    return Child("mesh-runtime", [*argv, "up", "-f", str(mesh_file), "--nats", url, "--no-reload"])

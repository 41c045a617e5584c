"""Pieces of startup.py: timing `up` to its ready line, and loading a generated mesh."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _harness import child_env, stop_process

READY_MARK = "ready:"

# Run in a fresh Python: how long the loader takes, apart from starting Python.
_LOAD_SNIPPET = """
import json, pathlib, sys, time
t0 = time.perf_counter()
from runtime.load.loader import load_mesh
from runtime.core.issues import MeshFileError
t1 = time.perf_counter()
try:
    mesh = load_mesh(pathlib.Path(sys.argv[1]))
except MeshFileError as exc:
    print(str(exc).splitlines()[0] if str(exc) else repr(exc), file=sys.stderr)
    sys.exit(1)
t2 = time.perf_counter()
agents = getattr(mesh, "agents", None)
print(json.dumps({"import": t1 - t0, "load": t2 - t1,
                  "agents": len(agents) if agents is not None else None}))
"""


def telling_line(output: str) -> str:
    """A crash's exception (the last line of a traceback), else the first thing it said."""
    lines = output.strip().splitlines() or ["(no output)"]
    return lines[-1] if "Traceback (most recent call last)" in output else lines[0]


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_port_free(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while port_taken(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass
class UpResult:
    ready: float = 0.0  # launch → the ready line
    stopped: float = 0.0  # SIGTERM → exit
    code: int | None = None  # exit code after SIGTERM (0 expected)
    failure: str = ""  # why there was no ready line


def time_up(argv: Sequence[str], cwd: Path, timeout: float) -> UpResult:
    """Launch `up`, time its ready line (stdout or stderr), then SIGTERM it and time the exit."""
    seen = threading.Event()
    lines: list[str] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(argv), cwd=cwd, env=child_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:  # read to the end, so the child never blocks on a full pipe
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            if READY_MARK in line:
                seen.set()
        seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        seen.wait(timeout)
        ready = time.perf_counter() - t0
        if not any(READY_MARK in line for line in lines):
            said = lines[-1] if lines else "(no output)"
            code = proc.poll()
            why = f"exited with code {code}" if code is not None else "no ready line"
            why += f" within {timeout:g} s" if code is None else ""
            return UpResult(failure=f"{why}: {said}")
        t1 = time.perf_counter()
        code = stop_process(proc, grace=15.0)
        return UpResult(ready=ready, stopped=time.perf_counter() - t1, code=code)
    finally:
        stop_process(proc)
        reader.join(timeout=5)


def generated_agents(count: int) -> str:
    """`count` agent entries (for an `agents:` block) with small schemas, handler handlers:echo."""
    return "".join(
        f"  gen.group{i // 100:02d}.agent{i:04d}:\n"
        f"    description: Generated agent {i}.\n"
        "    handler: handlers:echo\n"
        "    input: {type: object, properties: {text: {type: string}, "
        "n: {type: integer, minimum: 0}}, required: [text]}\n"
        "    output: {type: object, properties: {text: {type: string}}, required: [text]}\n"
        for i in range(count)
    )


def generate_mesh(folder: Path, count: int) -> Path:
    """A mesh.yaml of `count` agents with small schemas, and the handlers.py they name."""
    (folder / "handlers.py").write_text("async def echo(payload):\n    return payload\n")
    mesh_file = folder / "mesh.yaml"
    mesh_file.write_text("version: 1\nname: generated\n\nagents:\n" + generated_agents(count))
    return mesh_file


@dataclass
class LoadResult:
    load: float = 0.0  # load_mesh() alone
    whole: float = 0.0  # the whole `python -c` process
    agents: int | None = None
    failure: str = ""


@dataclass
class LoadProbe:
    mesh_file: Path

    def run(self) -> LoadResult:
        argv = [sys.executable, "-c", _LOAD_SNIPPET, str(self.mesh_file)]
        t0 = time.perf_counter()
        out = subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=60)
        whole = time.perf_counter() - t0
        if out.returncode != 0:
            return LoadResult(failure=f"exit code {out.returncode}: {telling_line(out.stderr)}")
        data = json.loads(out.stdout.strip().splitlines()[-1])
        return LoadResult(load=data["load"], whole=whole, agents=data["agents"])

    @staticmethod
    def time_command(argv: Sequence[str]) -> tuple[float, str]:
        """Wall time of a command that must exit 0; the failure, if any."""
        t0 = time.perf_counter()
        env = child_env()
        out = subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=60)
        took = time.perf_counter() - t0
        if out.returncode != 0:
            return took, f"exit code {out.returncode}: {telling_line(out.stdout + out.stderr)}"
        return took, ""

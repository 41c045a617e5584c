"""The echo benchmark's tracing rows: `up` from the code before tracing (git archive), and
`up` exporting spans to an OTLP/HTTP sink at sample 1.0 and 0.1, beside today's `up`
(propagation only, the default). Their CPU per request is compared with the code before's.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
from pathlib import Path

from _client import System
from _harness import (
    BENCH_DIR,
    PEERS_DIR,
    ROOT,
    Child,
    Children,
    child_env,
    mesh_runtime_argv,
    python_child,
)

TARGETS = {"propagation/before": 1.02, "sample 0.1/before": 1.10}
SAMPLES = {"export-1.0": 1.0, "export-0.1": 0.1}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def code_before(folder: Path) -> Path | None:
    """The runtime as it was just before runtime/tracing came in (None outside git)."""
    log = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--",
                          "runtime/tracing/w3c.py"], cwd=ROOT, capture_output=True, text=True)
    commits = log.stdout.split()
    if log.returncode != 0 or not commits:
        return None
    archive = subprocess.run(["git", "archive", f"{commits[-1]}^", "runtime"], cwd=ROOT,
                             capture_output=True)
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def echo_mesh(root: Path, key: str, tracing: str = "") -> Path:
    """The echo mesh in a folder of its own, its agent named bench.<key> (dots dropped),
    with `tracing` (YAML lines) at the top."""
    folder = root / key.replace(".", "")
    folder.mkdir()
    text = (BENCH_DIR / "echo" / "mesh.yaml").read_text()
    text = text.replace("bench.mesh", f"bench.{key.replace('.', '')}")
    text = text.replace("name: bench\n", f"name: bench\n{tracing}")
    (folder / "mesh.yaml").write_text(text)
    (folder / "handlers.py").write_text((BENCH_DIR / "echo" / "handlers.py").read_text())
    return folder / "mesh.yaml"


def tracing_yaml(port: int, sample: float) -> str:
    return f"tracing: {{endpoint: 'http://127.0.0.1:{port}', sample: {sample}}}\n"


def sink(port: int) -> Child:
    """An OTLP/HTTP collector that takes every batch and keeps nothing."""
    return python_child("otlp-sink", PEERS_DIR / "otlp_sink.py", str(port))


class TracingRows:
    """Mesh folders and children for the tracing systems; removed on close."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="mesh-bench-tracing-")
        self.root = Path(self._tmp.name)
        self.systems = {"before": System("up before tracing", "mesh.agent.bench.before")}
        for key in SAMPLES:
            self.systems[key] = System(f"up {key.replace('-', ' ')}",
                                       f"mesh.agent.bench.{key.replace('.', '')}")

    def _folder(self, key: str, tracing: str = "") -> Path:
        return echo_mesh(self.root, key, tracing)

    def launch(self, url: str, children: Children) -> None:
        argv = mesh_runtime_argv()
        if argv is None:
            for s in self.systems.values():
                s.unavailable = "the mesh-runtime command is not installed"
            return
        run = [*argv, "up", "--nats", url, "--no-reload", "-f"]
        (self.root / "code-before").mkdir()
        before = code_before(self.root / "code-before")
        if before is None:
            self.systems["before"].unavailable = "no git history to take the code before from"
        else:
            mesh = self._folder("before")
            self.systems["before"].launch(children, Child(
                "up-before", [*run, str(mesh)], cwd=mesh.parent,
                env=child_env(PYTHONPATH=str(before))))
        port = free_port()
        children.start(sink(port))
        for key, sample in SAMPLES.items():
            mesh = self._folder(key, tracing_yaml(port, sample))
            self.systems[key].launch(children, Child(f"up-{key}", [*run, str(mesh)],
                                                     cwd=mesh.parent))

    def ratios(self, now: System) -> list[str]:
        """CPU per request of today's `up` and the exporting ones over the code before's."""
        before = self.systems["before"]
        rows = []
        for label, system, target in (
                ("propagation/before", now, TARGETS["propagation/before"]),
                ("sample 1.0/before", self.systems["export-1.0"], None),
                ("sample 0.1/before", self.systems["export-0.1"], TARGETS["sample 0.1/before"])):
            if not (system.ok and before.ok and system.cpu_costs() and before.cpu_costs()):
                rows.append(f"{label} n/a")
                continue
            value = system.cpu_per_request() / before.cpu_per_request()
            rows.append(f"{label} {value:.2f}" + (f" (target ≤ {target:.2f})" if target else
                                                   " (stated, no target)"))
        return rows

    def close(self) -> None:
        self._tmp.cleanup()

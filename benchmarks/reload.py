"""Hot reload benchmark: from a file write to the new definition answering.

    python benchmarks/reload.py [--edits 20] [--agents 1000]

One nats-server and a real `mesh-runtime up` (hot reload on) in its own process.
(a) A small mesh: each edit changes the `config` value an agent returns; measured from
the write to the first reply showing it (requests in a tight loop), and to the
`reloaded` log line. Edits alternate between writing in place and writing a new file
renamed over the old one, as editors do; one warm-up edit is not counted.
(b) A generated mesh of 1,000 agents: the same, for a one-agent change, plus what the
process itself logs for the reload. For contrast, `load_mesh` of that file in this
process, without and with the cache a reload uses. Exit status 1 when something could
not be measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _harness import (
    child_env,
    format_table,
    import_runtime,
    machine_line,
    mesh_runtime_argv,
    orphan_notes,
    start_nats,
    stop_process,
)
from _startup import generated_agents

import_runtime()
from runtime.core.protocol import MeshError  # noqa: E402
from runtime.load.loader import LoadCache, load_mesh  # noqa: E402
from runtime.nats.caller import call_agent  # noqa: E402
from runtime.nats.client import open_client  # noqa: E402

TARGET_MS = 100.0
TARGET = "bench.target"
HANDLERS = """
async def value(payload, ctx):
    return {"v": ctx.config["v"]}


async def echo(payload):
    return payload
"""

Row = list[str]


class Up:
    """`mesh-runtime up` with each log line stamped (perf_counter) as it arrives."""

    def __init__(self, argv: list[str], mesh: Path, url: str):
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(
            [*argv, "up", "-f", str(mesh), "--nats", url], cwd=mesh.parent, env=child_env(),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append((time.perf_counter(), raw.decode(errors="replace").rstrip()))

    async def line(self, text: str, start: int, timeout: float = 60) -> tuple[float, str]:
        """The first line from index `start` containing `text`, with when it arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for stamp, line in self.lines[start:]:
                if text in line:
                    return stamp, line
            if self.proc.poll() is not None:
                break
            await asyncio.sleep(0.002)
        tail = self.lines[-1][1] if self.lines else "(no output)"
        raise RuntimeError(f"no {text!r} line from `up` ({tail})")

    def stop(self) -> int | None:
        return stop_process(self.proc)


def mesh_text(value: int, extra_agents: int = 0) -> str:
    return ("version: 1\nname: reload-bench\nagents:\n"
            f"  {TARGET}:\n    handler: handlers:value\n    config: {{v: {value}}}\n"
            + generated_agents(extra_agents))


def write_in_place(path: Path, text: str) -> None:
    path.write_text(text)


def write_by_rename(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.new")
    temp.write_text(text)
    os.replace(temp, path)


async def edits(up: Up, path: Path, count: int, extra_agents: int, url: str
                ) -> tuple[list[float], list[float], list[float]]:
    """Per edit: ms from write to the answer, to the `reloaded` line, and as logged."""
    nc = await open_client(url)
    answers: list[float] = []
    lines: list[float] = []
    logged: list[float] = []
    writers: list[Callable[[Path, str], None]] = [write_by_rename, write_in_place]
    try:
        for i in range(count + 1):  # edit 0 warms up and is not counted
            value = 1000 + i
            text = mesh_text(value, extra_agents)
            start = len(up.lines)
            began = time.perf_counter()
            writers[i % 2](path, text)
            while True:  # a tight, bounded loop of requests until the new value answers
                try:
                    reply = await call_agent(nc, TARGET, {}, timeout=2)
                except MeshError as exc:
                    raise RuntimeError(f"{TARGET} failed during a reload: {exc}") from None
                if reply.get("v") == value:
                    answered = time.perf_counter()
                    break
                if time.perf_counter() - began > 30:
                    raise RuntimeError("the new definition did not answer within 30 s")
            stamp, line = await up.line("reloaded:", start)
            if i == 0:
                continue
            answers.append((answered - began) * 1000)
            lines.append((stamp - began) * 1000)
            took = re.search(r"\((\d+) ms\)", line)
            if took:
                logged.append(float(took.group(1)))
    finally:
        await nc.close()
    return answers, lines, logged


def ms_row(label: str, runs: list[float], target: str = "") -> Row:
    if not runs:
        return [label, "not measured"]
    return [label, f"{statistics.median(runs):.1f}", f"{max(runs):.1f}", str(len(runs)), target]


async def measure(argv: list[str], url: str, folder: Path, count: int, extra: int) -> list[Row]:
    folder.mkdir()
    (folder / "handlers.py").write_text(HANDLERS)
    path = folder / "mesh.yaml"
    path.write_text(mesh_text(0, extra))
    up = Up(argv, path, url)
    try:
        await up.line("ready:", 0, timeout=120)
        answers, lines, logged = await edits(up, path, count, extra, url)
        code = up.stop()
    finally:
        up.stop()
    size = f"{extra + 1:,}-agent mesh"
    target = f"< {TARGET_MS:g} ms"
    rows = [ms_row(f"{size}: write → new definition answers", answers, target),
            ms_row(f"{size}: write → `reloaded` line", lines, target if extra else ""),
            ms_row(f"{size}: reload as logged (load + apply)", logged)]
    if code != 0:
        rows.append([f"{size}: exit code after SIGTERM", f"{code} (0 expected)"])
    return rows


def load_rows(folder: Path, agents: int) -> list[Row]:
    """load_mesh of the big file here: the whole cost, and a one-agent change with a cache."""
    path = folder / "mesh.yaml"
    path.write_text(mesh_text(0, agents - 1))
    cold = []
    for _ in range(2):
        began = time.perf_counter()
        load_mesh(path)
        cold.append((time.perf_counter() - began) * 1000)
    cache = LoadCache()
    load_mesh(path, cache=cache)
    warm = []
    for value in range(1, 6):
        path.write_text(mesh_text(value, agents - 1))
        began = time.perf_counter()
        load_mesh(path, cache=cache)
        warm.append((time.perf_counter() - began) * 1000)
    return [ms_row(f"load_mesh {agents:,} agents, no cache (in-process)", cold),
            ms_row(f"load_mesh {agents:,} agents, one changed, with cache", warm)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=20, help="measured edits (default 20)")
    parser.add_argument("--agents", type=int, default=1000, help="big mesh size (default 1000)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    argv = mesh_runtime_argv()
    if argv is None:
        print("mesh-runtime is not installed (pip install -e .)", file=sys.stderr)
        return 1
    rows: list[Row] = []
    ok = True
    server = start_nats()
    try:
        with tempfile.TemporaryDirectory(prefix="mesh-bench-reload-") as tmp:
            for name, extra in (("small", 0), ("big", args.agents - 1)):
                print(f"measuring the {name} mesh…", file=sys.stderr)
                try:
                    rows += asyncio.run(measure(argv, server.url, Path(tmp) / name,
                                                args.edits, extra))
                except RuntimeError as exc:
                    rows.append([f"{name} mesh", f"failed: {exc}"])
                    ok = False
            rows += load_rows(Path(tmp) / "small", args.agents)
    finally:
        server.stop()
    print(format_table(["measure", "median (ms)", "max (ms)", "edits", "target"], rows))
    print("edits alternate between a write in place and a write-then-rename; "
          "1 warm-up edit not counted")
    for note in orphan_notes():
        print(note)
    print(machine_line())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

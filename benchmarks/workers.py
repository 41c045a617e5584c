"""Workers benchmark: code reload, start-up, and a CPU-bound handler on 1 and 2 workers.

    python benchmarks/workers.py [--edits 10] [--runs 5] [--rounds 3] [--seconds 3]

(a) Code reload: `mesh-runtime up` serving a handler module; each edit changes the value
the handler's code returns. Timed from the write to the first reply of the new code
(requests in a tight loop), and to the `reloaded` line. Edits alternate between a write
in place and a write renamed over the file, PAUSE seconds apart (a person saves every
few seconds at most; `up` keeps a spare worker ready meanwhile); one warm-up edit is not
counted.
(b) `up` from launch to its `ready:` line with one worker, against a running nats-server
(--nats) and with its own embedded server.
(c) A CPU-bound handler (about 200 µs of pure Python per request, calibrated here first):
requests/s at concurrency 64 with --workers 1 and --workers 2, and a hand-written nats-py
responder doing the same work (one process), in interleaved rounds. The load generator
runs on the same cores as the workers and nats-server: its CPU is in the table.
Exit status 1 when something could not be measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _client
from _harness import (
    BENCH_DIR,
    PEERS_DIR,
    Child,
    Children,
    child_env,
    descendants,
    format_table,
    import_runtime,
    machine_line,
    orphan_notes,
    python_child,
    start_nats,
)
from _startup import time_up
from reload import Up, write_by_rename, write_in_place

import_runtime()
from runtime.core.protocol import MeshError  # noqa: E402
from runtime.nats.caller import call_agent  # noqa: E402
from runtime.nats.client import open_client  # noqa: E402

sys.path.insert(0, str(BENCH_DIR / "workers"))
from handlers import spin  # noqa: E402

UP = [sys.executable, "-m", "runtime", "up"]
PAUSE = 2.0  # seconds between code edits
WORK_US = 200.0
Row = list[str]

CODE = "VALUE = {value}\n\n\nasync def value(payload):\n    return {{'v': VALUE}}\n"
RELOAD_MESH = "version: 1\nname: workers-bench\nagents:\n  bench.code:\n    handler: handlers:value\n"


def ms_row(label: str, runs: list[float], target: str) -> Row:
    return [label, f"{statistics.median(runs):.0f}", f"{max(runs):.0f}", str(len(runs)), target]


# -- (a) code reload ----------------------------------------------------------------------

async def code_reload(url: str, folder: Path, edits: int) -> list[Row]:
    code = folder / "handlers.py"
    code.write_text(CODE.format(value=0))
    (folder / "mesh.yaml").write_text(RELOAD_MESH)
    up = Up(UP[:-1], folder / "mesh.yaml", url)
    answers, lines = [], []
    try:
        await up.line("ready:", 0, timeout=60)
        nc = await open_client(url)
        try:
            for i in range(edits + 1):  # edit 0 warms up and is not counted
                await asyncio.sleep(PAUSE)
                start, began = len(up.lines), time.perf_counter()
                (write_by_rename if i % 2 else write_in_place)(code, CODE.format(value=i + 1))
                while True:  # a tight, bounded loop of requests until the new code answers
                    try:
                        reply = await call_agent(nc, "bench.code", {}, timeout=5)
                    except MeshError as exc:
                        raise RuntimeError(f"a request failed during a reload: {exc}") from None
                    if reply["v"] == i + 1:
                        break
                    if time.perf_counter() - began > 30:
                        raise RuntimeError("the new code did not answer within 30 s")
                answered = time.perf_counter()
                stamp, _ = await up.line("reloaded:", start)
                if i:
                    answers.append((answered - began) * 1000)
                    lines.append((stamp - began) * 1000)
        finally:
            await nc.close()
    finally:
        up.stop()
    return [ms_row("code edit: write → new code answers", answers, "median < 1500 ms"),
            ms_row("code edit: write → `reloaded` line", lines, "")]


# -- (b) start-up -------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def startup(url: str, folder: Path, runs: int) -> tuple[list[Row], bool]:
    (folder / "handlers.py").write_text(CODE.format(value=0))
    mesh = folder / "mesh.yaml"
    rows, ok = [], True
    for label, extra in (("--nats URL", ["--nats", url]), ("embedded server", [])):
        took = []
        for _ in range(runs):
            nats = f"nats:\n  embedded: {{port: {free_port()}}}\n" if not extra else ""
            mesh.write_text(RELOAD_MESH + nats)
            result = time_up([*UP, "-f", str(mesh), *extra], folder, timeout=30)
            if result.failure or result.code != 0:
                rows.append([f"up → ready ({label})", f"failed: {result.failure or result.code}"])
                ok = False
                break
            took.append(result.ready * 1000)
        if took:
            rows.append(ms_row(f"up → ready, 1 worker ({label})", took, "< 1000 ms"))
    return rows, ok


# -- (c) CPU-bound throughput -------------------------------------------------------------

def calibrate() -> int:
    """Loop iterations that take about WORK_US of CPU here."""
    iterations = 20_000
    best = min(_timed(iterations) for _ in range(5))
    return max(100, int(iterations * WORK_US / (best * 1e6)))


def _timed(iterations: int) -> float:
    began = time.process_time()
    spin(iterations)
    return time.process_time() - began


def mesh_child(folder: Path, name: str, url: str, workers: int, env: dict[str, str]) -> Child:
    folder.mkdir()
    shutil.copy(BENCH_DIR / "workers" / "handlers.py", folder / "handlers.py")
    text = (BENCH_DIR / "workers" / "mesh.yaml").read_text().replace("bench.cpu", name)
    (folder / "mesh.yaml").write_text(text)
    argv = [*UP, "-f", str(folder / "mesh.yaml"), "--nats", url, "--no-reload",
            "--workers", str(workers)]
    return Child(f"mesh-w{workers}", argv, env=env)


async def cpu_bound(url: str, folder: Path, rounds: int, seconds: float,
                    spins: int) -> tuple[list[Row], list[str], bool]:
    env = child_env(MESH_BENCH_SPIN=str(spins))
    systems = {"raw (1 process)": "bench.raw-cpu", "mesh --workers 1": "bench.cpu-w1",
               "mesh --workers 2": "bench.cpu-w2"}
    results: dict[str, list[_client.Throughput]] = {label: [] for label in systems}
    with Children() as children:
        raw = python_child("raw-cpu", PEERS_DIR / "raw_cpu.py", url)
        raw.env = env
        started = {"raw (1 process)": children.start(raw),
                   "mesh --workers 1": children.start(mesh_child(folder / "w1", "bench.cpu-w1",
                                                                 url, 1, env)),
                   "mesh --workers 2": children.start(mesh_child(folder / "w2", "bench.cpu-w2",
                                                                 url, 2, env))}
        nc = await open_client(url)
        try:
            for label, subject in systems.items():
                why = await _client.wait_ready(nc, f"mesh.agent.{subject}", started[label],
                                               lambda reply: "total" in reply, timeout=60)
                if why:
                    return [[label, f"failed: {why}"]], [], False
            for _ in range(rounds):
                for label, subject in systems.items():
                    pid = started[label].pid
                    watch = [p for p in [pid, *descendants(pid or 0)] if p] if pid else []
                    results[label].append(await _client.throughput(
                        nc, f"mesh.agent.{subject}", concurrency=64, seconds=seconds,
                        warmup=1.0, watch=watch))
        finally:
            await nc.close()
    rows, rps = [], {}
    for label, runs in results.items():
        rps[label] = statistics.median(r.rps for r in runs)
        middle = sorted(runs, key=lambda r: r.rps)[len(runs) // 2]
        client = middle.cpu[0] or 0.0
        served = sum(c or 0.0 for c in middle.cpu[1:])
        rows.append([label, f"{rps[label]:,.0f}", f"{client * 100:.0f}/{served * 100:.0f}",
                     str(sum(r.errors for r in runs))])
    scale = rps["mesh --workers 2"] / rps["mesh --workers 1"]
    notes = [f"ratios: workers 2 / workers 1 {scale:.2f} (target ≥ 1.6), workers 1 / raw "
             f"{rps['mesh --workers 1'] / rps['raw (1 process)']:.2f}",
             f"work per request: spin({spins}) ≈ {WORK_US:.0f} µs of pure Python (calibrated "
             f"here); median of {rounds} interleaved rounds of {seconds:g} s at concurrency 64; "
             "the client is one asyncio process on the same cores"]
    return rows, notes, True


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=10, help="code edits timed (default 10)")
    parser.add_argument("--runs", type=int, default=5, help="start-ups timed (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="CPU-bound rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per round (default 3)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    load_at_start = _load()
    rows: list[Row] = []
    ok = True
    server = start_nats()
    try:
        with tempfile.TemporaryDirectory(prefix="mesh-bench-workers-") as tmp:
            folder = Path(tmp)
            for name in ("reload", "startup", "cpu"):
                (folder / name).mkdir()
            print("timing code reloads…", file=sys.stderr)
            try:
                rows += asyncio.run(code_reload(server.url, folder / "reload", args.edits))
            except RuntimeError as exc:
                rows.append(["code edit", f"failed: {exc}"])
                ok = False
            print("timing start-ups…", file=sys.stderr)
            started, fine = startup(server.url, folder / "startup", args.runs)
            rows, ok = rows + started, ok and fine
            print("measuring the CPU-bound handler…", file=sys.stderr)
            cpu_rows, notes, fine = _client.run(cpu_bound(
                server.url, folder / "cpu", args.rounds, args.seconds, calibrate()))
            ok = ok and fine
    finally:
        server.stop()
    print(format_table(["measure", "median (ms)", "max (ms)", "runs", "target"], rows))
    print(f"code edits {PAUSE:g} s apart; load average {load_at_start} at the start, "
          f"{_load()} at the end (2 cores: above 2, other processes share them)")
    print()
    print(format_table(["CPU-bound handler", "req/s@64", "cpu% client/served", "errors"],
                       cpu_rows))
    for line in [*notes, *orphan_notes(), machine_line()]:
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Health benchmark: what liveness and stats cost, and how fast the mesh sees itself.

    python benchmarks/health.py [--rounds 3] [--seconds 2] [--window 15]

(1) Echo throughput at concurrency 64: raw nats-py, `up` as it is now (heartbeats, stats,
micro on), and `up` from the commit before liveness and stats existed (extracted with
`git archive` into a temporary folder), interleaved rounds, median; the ratios to raw.
(2) Messages per second a 1,000-agent `up` exchanges with NATS while idle (heartbeats,
dead-instance checks), read from nats-server's own /connz counters over --window seconds.
(3) `mesh-runtime status --json` on that 1,000-agent mesh, the whole command, median of 3.
(4) `kill -9` of one of two `up`s (health.interval 1s) to its instance leaving the catalog.
(5) A 5,000-agent mesh.yaml: `up` from launch to its `ready:` line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import nats
from _client import median, throughput, wait_ready
from _harness import (
    BENCH_DIR,
    ROOT,
    child_env,
    descendants,
    format_table,
    import_runtime,
    machine_line,
    raw_peer,
    stop_process,
)
from _startup import LoadProbe, generate_mesh, time_up

import_runtime()
from runtime.nats.embedded import NatsServer  # noqa: E402

CONCURRENCY = 64
TARGETS = {"liveness msg/s": 1.0, "status s": 1.0, "ready s": 5.0}


class Up:
    """A `mesh-runtime up` child whose output is read for its `ready:` line."""

    def __init__(self, mesh: Path, url: str, code_root: Path = ROOT, *extra: str):
        env = child_env(PYTHONPATH=str(code_root))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime", "up", "-f", str(mesh), "--nats", url,
             "--no-reload", *extra], cwd=mesh.parent, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            if "ready:" in line:
                self.ready.set()
        self.ready.set()

    def wait(self, timeout: float = 60) -> Up:
        if not self.ready.wait(timeout) or self.proc.poll() is not None:
            raise RuntimeError("`up` did not get ready: " + " | ".join(self.lines[-3:]))
        return self

    def instance(self) -> str:
        line = next(x for x in self.lines if "heartbeat every" in x)
        return line.split("instance ")[1].split(":")[0]

    def stop(self) -> None:
        stop_process(self.proc)  # type: ignore[arg-type]

    def crash(self) -> None:
        """SIGKILL `up` and every process it started (its workers) at once, as a crash."""
        self.proc.send_signal(signal.SIGSTOP)  # so it starts no new worker meanwhile
        for pid in descendants(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait(10)


def code_before(folder: Path) -> Path | None:
    """The runtime as it was just before liveness and stats (serve/stats.py) came in."""
    log = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--",
                          "runtime/serve/stats.py"], cwd=ROOT, capture_output=True, text=True)
    commits = log.stdout.split()
    if log.returncode != 0 or not commits:
        return None
    archive = subprocess.run(["git", "archive", f"{commits[-1]}^", "runtime"], cwd=ROOT,
                             capture_output=True)
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def is_echo(reply: object) -> bool:
    return isinstance(reply, dict) and reply.get("message") == "hello"


async def echo_rounds(url: str, rounds: int, seconds: float,
                      subjects: dict[str, str]) -> dict[str, float]:
    nc = await nats.connect(url)
    results: dict[str, list[float]] = {k: [] for k in subjects}
    try:
        for key, subject in subjects.items():
            problem = await wait_ready(nc, subject, None, is_echo, 30)
            if problem:
                raise RuntimeError(f"{key}: {problem}")
        for rnd in range(rounds):
            for key, subject in subjects.items():
                tp = await throughput(nc, subject, concurrency=CONCURRENCY, seconds=seconds,
                                      warmup=0.5)
                results[key].append(tp.rps)
                print(f"round {rnd + 1}/{rounds} {key}: {tp.rps:,.0f} req/s", file=sys.stderr)
    finally:
        await nc.close()
    return {k: median(v) for k, v in results.items()}


def echo_rows(url: str, args: argparse.Namespace, tmp: Path) -> list[list[str]]:
    (tmp / "before").mkdir()
    before_root = code_before(tmp / "before")
    now_mesh = tmp / "now" / "mesh.yaml"
    (tmp / "now").mkdir()
    echo_text = (BENCH_DIR / "echo" / "mesh.yaml").read_text()
    now_mesh.write_text(echo_text)
    (tmp / "now" / "handlers.py").write_text((BENCH_DIR / "echo" / "handlers.py").read_text())
    raw = raw_peer(url)
    raw.start(tmp)
    ups = [Up(now_mesh, url).wait()]
    subjects = {"raw": "mesh.agent.bench.raw", "up now": "mesh.agent.bench.mesh"}
    if before_root is not None:
        old = tmp / "old"
        old.mkdir()
        (old / "mesh.yaml").write_text(echo_text.replace("bench.mesh", "bench.before"))
        (old / "handlers.py").write_text((BENCH_DIR / "echo" / "handlers.py").read_text())
        ups.append(Up(old / "mesh.yaml", url, before_root).wait())
        subjects["up before"] = "mesh.agent.bench.before"
    try:
        rps = asyncio.run(echo_rounds(url, args.rounds, args.seconds, subjects))
    finally:
        for up in ups:
            up.stop()
        raw.stop()
    rows = [[f"echo req/s ({key})", f"{value:,.0f}",
             f"{value / rps['raw']:.2f} of raw" if key != "raw" else ""]
            for key, value in rps.items()]
    if "up before" in rps:
        rows.append(["echo: now / before", f"{rps['up now'] / rps['up before']:.2f}",
                     "target ≥ 0.97 (no worse, within noise)"])
    return rows


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def connz_messages(monitor: int, name: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/connz?limit=1000",
                                timeout=5) as response:
        data = json.loads(response.read())
    return sum(c.get("in_msgs", 0) + c.get("out_msgs", 0)
               for c in data.get("connections", []) if c.get("name") == name)


def big_rows(args: argparse.Namespace, tmp: Path) -> list[list[str]]:
    monitor = free_port()
    rows = []
    with NatsServer(extra_args=["-m", str(monitor)]) as server:
        folder = tmp / "thousand"
        folder.mkdir()
        mesh = generate_mesh(folder, 1000)
        up = Up(mesh, server.url).wait()
        try:
            time.sleep(1.0)  # let the start-up traffic settle before counting
            first = connz_messages(monitor, "mesh-runtime generated")
            time.sleep(args.window)
            rate = (connz_messages(monitor, "mesh-runtime generated") - first) / args.window
            rows.append(["liveness msg/s (1,000 agents, idle)", f"{rate:.2f}",
                         f"target ≤ {TARGETS['liveness msg/s']:g}"])
            took = []
            for _ in range(3):
                t0 = time.perf_counter()
                out = subprocess.run([sys.executable, "-m", "runtime", "status", "--json",
                                      "--nats", server.url], capture_output=True,
                                     env=child_env(), cwd=ROOT, timeout=60)
                took.append(time.perf_counter() - t0)
                assert len(json.loads(out.stdout)) == 1000, out.stderr[-300:]
            rows.append(["status --json (1,000 agents), whole command, s",
                         f"{median(took):.2f}", f"target < {TARGETS['status s']:g}"])
            inner = [asyncio.run(status_inside(server.url)) for _ in range(3)]
            rows.append(["  of which reading the mesh (in-process), s", f"{median(inner):.2f}",
                         "the rest is starting Python and imports"])
        finally:
            up.stop()
    return rows


async def status_inside(url: str) -> float:
    """What `status` does once Python is up: catalog, instance records, STATS answers."""
    from runtime.nats.client import open_client
    from runtime.nats.listing import full_catalog
    from runtime.nats.status import gather_stats, live_instances, summarize

    nc = await open_client(url)
    try:
        t0 = time.perf_counter()
        listed = await full_catalog(nc) or []
        live = await live_instances(nc)
        summarize([str(e.get("name")) for e in listed], await gather_stats(nc, live), live)
        return time.perf_counter() - t0
    finally:
        await nc.close()


def kill_rows(tmp: Path) -> list[list[str]]:
    with NatsServer() as server:
        ups = []
        for side in ("left", "right"):
            folder = tmp / side
            folder.mkdir()
            mesh = generate_mesh(folder, 3)
            mesh.write_text(mesh.read_text().replace(
                "name: generated", f"name: {side}\nhealth: {{interval: 1s}}"))
            ups.append(Up(mesh, server.url).wait())
        try:
            dead = ups[0].instance()
            ups[0].crash()
            left = asyncio.run(until_gone(server.url, dead, 30))
        finally:
            for up in ups:
                up.stop()
    return [["kill -9 → out of the catalog (interval 1s), s", f"{left:.2f}",
             "target ≤ 4 (3 intervals + 1 s)"]]


async def until_gone(url: str, instance: str, limit: float) -> float:
    t0 = time.perf_counter()
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value("mesh-catalog")
        while time.perf_counter() - t0 < limit:
            entries = json.loads((await kv.get("catalog")).value or b"[]")
            if not any(instance in (e.get("x-instances") or []) for e in entries):
                return time.perf_counter() - t0
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
    return float("inf")


def ready_rows(tmp: Path) -> list[list[str]]:
    with NatsServer() as server:
        folder = tmp / "five-thousand"
        folder.mkdir()
        mesh = generate_mesh(folder, 5000)
        result = time_up([sys.executable, "-m", "runtime", "up", "-f", str(mesh), "--nats",
                          server.url, "--no-reload"], folder, timeout=120)
        load = LoadProbe(mesh).run()
    value = result.failure or f"{result.ready:.2f}"
    return [["up → ready: (5,000 agents), s", value, f"target < {TARGETS['ready s']:g}"],
            ["  of which load_mesh (in a fresh Python), s", load.failure or f"{load.load:.2f}",
             "checking the file; the rest is serving"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--window", type=float, default=15.0,
                        help="seconds over which idle liveness traffic is counted")
    args = parser.parse_args()
    print(machine_line())
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="mesh-health-") as name:
        tmp = Path(name)
        with NatsServer() as server:
            rows += echo_rows(server.url, args, tmp)
        rows += big_rows(args, tmp)
        rows += kill_rows(tmp)
        rows += ready_rows(tmp)
    print(format_table(["measure", "value", "note"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

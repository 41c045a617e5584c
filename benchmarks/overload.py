"""Overload benchmark: a slow agent past its capacity, a flood of large requests, and
30,000 requests parked in an agent's waiting line.

    python benchmarks/overload.py [--seconds 20]

One nats-server and one `mesh-runtime up` on benchmarks/overload/mesh.yaml, in their own
processes; this process is the client. bench.slow awaits 50 ms, 8 at a time: its capacity
is 160 requests/s. The client offers it 4x and 20x that, open loop (requests are sent on
a schedule, whatever the answers), and counts what comes back: goodput (answers `ok` per
second) as a share of capacity, the p99 latency of those answers, how many were refused
`overloaded`, `up`'s peak RSS growth and its CPU per offered request. Then 20,000
requests of 20 KB at once (peak RSS growth), and 30,000 requests parked behind 8 that run
for minutes on bench.parked (CPU to park each, and `up`'s CPU while they wait).
A raw nats-py responder has no admission to compare with, so the yardstick here is the
agent's own capacity. Exit status 1 when something could not be measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats
import orjson
from _client import percentile, run
from _harness import (
    BENCH_DIR,
    Child,
    Children,
    cpu_seconds,
    descendants,
    machine_line,
    mesh_runtime_argv,
    orphan_notes,
    start_nats,
)
from nats.aio.client import Client
from nats.aio.msg import Msg

CAPACITY = 8 / 0.05  # bench.slow: concurrency 8, 50 ms each
TARGETS = {"goodput at 20x": 0.9, "flood RSS growth MB": 100, "idle CPU % parked": 5}
FLOOD, FLOOD_BYTES, PARKED = 20_000, 20_000, 30_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="each overload phase")
    return parser.parse_args()


def rss_mb(pid: int) -> float:
    """The RSS of `up` and its worker processes (Linux /proc)."""
    total = 0.0
    for each in [pid, *descendants(pid)]:
        try:
            lines = Path(f"/proc/{each}/status").read_text().splitlines()
        except OSError:
            continue  # gone meanwhile
        total += sum(int(x.split()[1]) / 1024 for x in lines if x.startswith("VmRSS:"))
    return total


async def drained(nc: Client) -> None:
    """Wait until `up` has taken in what it was sent: a request behind the backlog answers."""
    with contextlib.suppress(Exception):
        await nc.request("mesh.agent.bench.slow", b'{"seconds": 0}', timeout=60)


@dataclass
class Phase:
    """What came back for requests sent in one phase."""

    sent: int = 0
    window_end: float = float("inf")  # answers after it do not count for goodput
    ok_in_window: int = 0
    ok_ms: list[float] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    sent_at: dict[int, float] = field(default_factory=dict)
    peak_rss: float = 0.0
    cpu: float = 0.0  # up's CPU seconds during the phase
    client_cpu: float = 0.0
    wall: float = 0.0

    @property
    def answered(self) -> int:
        return len(self.ok_ms) + sum(self.codes.values())

    async def on_reply(self, msg: Msg) -> None:
        index = int(msg.subject.rsplit(".", 1)[1])
        if msg.headers and msg.headers.get("X-Mesh-Status") == "error":
            code = orjson.loads(msg.data)["code"]
            self.codes[code] = self.codes.get(code, 0) + 1
        else:
            now = time.perf_counter()
            self.ok_ms.append((now - self.sent_at.pop(index)) * 1000)
            self.ok_in_window += now <= self.window_end


async def watch_rss(pid: int, phase: Phase, stop: asyncio.Event) -> None:
    while not stop.is_set():
        phase.peak_rss = max(phase.peak_rss, rss_mb(pid))
        await asyncio.sleep(0.05)


async def offer(nc: Client, pid: int, subject: str, rate: float, seconds: float,
                body: bytes = b"{}", settle: float = 8.0) -> Phase:
    """Send `rate` requests/s for `seconds` (all at once if rate is 0), then wait for the
    answers (at most `settle` seconds); `up`'s peak RSS and CPU are noted meanwhile."""
    phase = Phase()
    inbox = nc.new_inbox()
    sub = await nc.subscribe(f"{inbox}.*", cb=phase.on_reply)
    stop = asyncio.Event()
    watcher = asyncio.ensure_future(watch_rss(pid, phase, stop))
    cpu_before, client_before = cpu_seconds(pid) or 0.0, time.process_time()
    started = time.perf_counter()
    total = int(rate * seconds) if rate else int(seconds)
    phase.window_end = started + seconds
    while phase.sent < total:
        due = total if not rate else min(total, int((time.perf_counter() - started) * rate))
        while phase.sent < due:
            phase.sent_at[phase.sent] = time.perf_counter()
            await nc.publish(subject, body, reply=f"{inbox}.{phase.sent}")
            phase.sent += 1
        await asyncio.sleep(0.002)
    await nc.flush()
    until = time.perf_counter() + settle
    while phase.answered < phase.sent and time.perf_counter() < until:
        await asyncio.sleep(0.05)
    phase.cpu = (cpu_seconds(pid) or 0.0) - cpu_before
    phase.client_cpu = time.process_time() - client_before
    phase.wall = time.perf_counter() - started
    stop.set()
    await watcher
    await sub.unsubscribe()
    return phase


async def wait_ready(nc: Client, child: Child) -> None:
    for _ in range(400):  # bounded: 20 s
        if child.exit_code() is not None:
            raise RuntimeError(f"up exited: {child.last_line()}")
        try:
            await nc.request("mesh.agent.bench.slow", b'{"seconds": 0}', timeout=0.5)
            return
        except Exception:
            await asyncio.sleep(0.05)
    raise RuntimeError("up not ready within 20 s")


async def measure(url: str, child: Child, seconds: float) -> list[str]:
    pid = child.pid
    assert pid is not None
    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    lines = []
    try:
        await wait_ready(nc, child)
        for times in (4, 20):
            await drained(nc)
            base = rss_mb(pid)
            phase = await offer(nc, pid, "mesh.agent.bench.slow", CAPACITY * times, seconds)
            ordered = sorted(phase.ok_ms)
            goodput = phase.ok_in_window / seconds / CAPACITY
            lines.append(
                f"{times}x capacity ({CAPACITY * times:.0f} req/s for {seconds:g} s): goodput "
                f"{goodput:.2f} of capacity, p99 of answered {percentile(ordered, 99):.0f} ms, "
                f"overloaded {phase.codes.get('overloaded', 0):,} of {phase.sent:,}, "
                f"other errors {sum(phase.codes.values()) - phase.codes.get('overloaded', 0)}, "
                f"unanswered {phase.sent - phase.answered}, peak RSS growth "
                f"{phase.peak_rss - base:.1f} MB, CPU {phase.cpu / phase.sent * 1e6:.0f} µs "
                f"per offered request (up {phase.cpu / phase.wall:.0%} of a core, client "
                f"{phase.client_cpu / phase.wall:.0%})")
            print(lines[-1], file=sys.stderr)
        await drained(nc)
        base = rss_mb(pid)
        body = orjson.dumps({"pad": "x" * (FLOOD_BYTES - 12)})
        phase = await offer(nc, pid, "mesh.agent.bench.slow", 0, FLOOD, body, settle=20)
        lines.append(
            f"flood of {FLOOD:,} requests of {len(body) // 1000} KB at once: peak RSS growth "
            f"{phase.peak_rss - base:.1f} MB (target < {TARGETS['flood RSS growth MB']}), "
            f"ok {len(phase.ok_ms):,}, overloaded {phase.codes.get('overloaded', 0):,}, "
            f"unanswered {phase.sent - phase.answered:,}")
        print(lines[-1], file=sys.stderr)
        await drained(nc)
        lines.append(await parked(nc, pid))
    finally:
        await nc.close()
    return lines


async def parked(nc: Client, pid: int) -> str:
    """8 requests hold bench.parked's slots for minutes; 30,000 more wait in its line."""
    for _ in range(8):
        await nc.publish("mesh.agent.bench.parked", b'{"seconds": 600}', reply=nc.new_inbox())
    await nc.flush()
    base_rss, cpu_before = rss_mb(pid), cpu_seconds(pid) or 0.0
    for _ in range(PARKED):
        await nc.publish("mesh.agent.bench.parked", b"{}", reply=nc.new_inbox())
    await nc.flush()
    await asyncio.sleep(2)  # let `up` take in the last of them
    parking = (cpu_seconds(pid) or 0.0) - cpu_before
    idle_before, started = cpu_seconds(pid) or 0.0, time.perf_counter()
    await asyncio.sleep(5)
    idle = ((cpu_seconds(pid) or 0.0) - idle_before) / (time.perf_counter() - started) * 100
    line = (f"{PARKED:,} parked: {parking / PARKED * 1e6:.0f} µs CPU to park each, idle CPU "
            f"{idle:.1f}% while they wait (target < {TARGETS['idle CPU % parked']}%), RSS "
            f"{rss_mb(pid) - base_rss:.1f} MB for the line")
    print(line, file=sys.stderr)
    return line


def main() -> int:
    args = parse_args()
    argv = mesh_runtime_argv()
    if argv is None:
        print("the mesh-runtime command is not installed (pip install -e .)", file=sys.stderr)
        return 1
    server = start_nats()
    try:
        with Children() as children:
            child = children.start(Child("mesh-runtime", [
                *argv, "up", "-f", str(BENCH_DIR / "overload" / "mesh.yaml"),
                "--nats", server.url, "--no-reload", "--grace", "1"]))
            lines = run(measure(server.url, child, args.seconds))
            assert child.log_path is not None
            log = child.log_path.read_text(errors="replace")
            lines.append(f"up lost its NATS connection {log.count('disconnected from NATS')} "
                         "time(s) during the run (nats-server cuts a slow consumer)")
    finally:
        server.stop()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print("\n".join([*lines, f"client: one nats-py connection, open loop; {os.cpu_count()} "
                     f"cores shared by client, server and up; load average at the end {load}",
                     *orphan_notes(), machine_line()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Parked-runs benchmark: what 10,000 durable runs parked on a wait step cost an idle `up`.

    python benchmarks/parked.py [--runs 10000] [--idle 30]

One nats-server and `mesh-runtime up` on benchmarks/parked/mesh.yaml. First the idle `up`
alone is measured (CPU over `--idle` seconds, resident memory of its process tree); then
`--runs` runs are started (X-Mesh-Async, 100 at a time) and, once every one has parked
(its `step_waiting` is in the journal), the same idle window is measured again. Targets:
under 5% of one core and under 50 MB more than the idle `up` without them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import nats
from _client import run
from _harness import BENCH_DIR, Children, cpu_seconds, descendants, machine_line, mesh_peer, start_nats

CPU_TARGET = 5.0  # percent of one core
MEMORY_TARGET = 50.0  # MB


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of each idle window")
    return parser.parse_args()


def rss_mb(pid: int) -> float:
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


async def ready(url: str) -> None:
    nc = await nats.connect(url)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                await nc.request("$SRV.PING.bench-parked", b"", timeout=1)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def park(url: str, count: int) -> float:
    """Start `count` runs and wait until all have parked; the seconds it took."""
    nc = await nats.connect(url)
    started = time.monotonic()
    try:
        sem = asyncio.Semaphore(100)

        async def one(i: int) -> None:
            async with sem:
                await nc.request("mesh.agent.bench.parked", b"{}", timeout=60, headers={
                    "X-Mesh-Request-Id": f"parked-{i}", "X-Mesh-Async": "true"})

        await asyncio.gather(*(one(i) for i in range(count)))
        kv = await nc.jetstream().key_value("mesh-run-leases")
        while await parked_leases(kv) < count:  # every lease says "parked": nothing is left
            await asyncio.sleep(1)
        return time.monotonic() - started
    finally:
        await nc.close()


async def parked_leases(kv: Any) -> int:
    """How many leases say their run is parked (one pass over the bucket's values)."""
    watcher = await kv.watchall()
    parked = 0
    try:
        while (entry := await watcher.updates(timeout=10)) is not None:
            parked += b'"parked"' in (entry.value or b"")
    finally:
        await watcher.stop()
    return parked


def idle(pid: int, seconds: float) -> tuple[float, float]:
    """(percent of one core, MB resident) of the `up` tree over an idle window."""
    before = cpu_seconds(pid) or 0.0
    time.sleep(seconds)
    after = cpu_seconds(pid) or 0.0
    return 100 * (after - before) / seconds, rss_mb(pid)


def main() -> int:
    args = parse_args()
    server = start_nats()
    try:
        with Children() as children:
            peer = mesh_peer(server.url, BENCH_DIR / "parked" / "mesh.yaml")
            if isinstance(peer, str):
                print(f"unavailable: {peer}")
                return 1
            up = children.start(peer)
            run(ready(server.url))
            assert up.pid is not None
            time.sleep(2)  # let start-up settle before the first window
            cpu0, mem0 = idle(up.pid, args.idle)
            took = run(park(server.url, args.runs))
            time.sleep(2)
            cpu1, mem1 = idle(up.pid, args.idle)
    finally:
        server.stop()
    print(f"idle up, no runs:            {cpu0:5.2f}% of a core, {mem0:6.1f} MB resident")
    print(f"idle up, {args.runs:,} parked runs: {cpu1:5.2f}% of a core, {mem1:6.1f} MB resident"
          f" (+{mem1 - mem0:.1f} MB)")
    print(f"targets: under {CPU_TARGET:g}% and under {MEMORY_TARGET:g} MB more; parking "
          f"{args.runs:,} runs took {took:.1f} s ({args.runs / took:.0f} runs/s)")
    print(f"idle windows of {args.idle:g} s; {machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Orchestration benchmark: a call by capability against the same call by name, and a
broadcast to 10 agents against one call.

    python benchmarks/orchestration.py [--rounds 3] [--seconds 2]

One nats-server; the raw responder of echo.py and `mesh-runtime up` on
benchmarks/orchestration/mesh.yaml (bench.echo, which also offers capability
bench.echo-cap, and bench.voter0..9, which all offer bench.vote) in their own processes.
Concurrency 1, and the systems take turns request by request, in a shuffled order each
turn, so a busy machine slows them alike and the ratios hold; each figure is the median of
the rounds. The broadcast
is runtime.nats.bus.NatsBus.broadcast, as `mesh-runtime broadcast` and pipeline steps run
it: it ends when all 10 have answered (the catalog says how many will). Exit status 1 when
something could not be measured.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

import nats
from _client import Latency, System, call, is_error, loop_name, percentile, run
from _harness import (
    BENCH_DIR,
    Children,
    format_table,
    import_runtime,
    machine_line,
    mesh_peer,
    orphan_notes,
    raw_peer,
    start_nats,
)
from nats.aio.client import Client as NATS

import_runtime()
from runtime.nats.bus import NatsBus  # noqa: E402  (after the repo is importable)

READY_TIMEOUT = 20.0
CAPABILITY_TARGET = 1.05  # a call by capability within 5% of the same call by name
BROADCAST_TARGET = 2.0  # a broadcast to 10 agents at most 2x one call's p50
VOTERS = 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=2.0, help="window per system per round")
    return parser.parse_args()


def says_hello(reply: Any) -> bool:
    return isinstance(reply, dict) and reply.get("message") == "hello"


async def start_all(url: str, children: Children, systems: list[System]) -> None:
    raw, by_name, by_capability, cast = systems
    nc = await nats.connect(url)
    try:
        raw.launch(children, raw_peer(url))
        by_name.launch(children, mesh_peer(url, BENCH_DIR / "orchestration" / "mesh.yaml"))
        for other in (by_capability, cast):
            other.child, other.unavailable = by_name.child, by_name.unavailable
        for s in (raw, by_name, by_capability):
            await s.wait_ready(nc, says_hello, READY_TIMEOUT)
        if cast.ok:
            cast.unavailable = await wait_for_voters(nc)
    finally:
        await nc.close()


async def wait_for_voters(nc: NATS) -> str | None:
    """None once a broadcast gets all voters' answers (and the catalog lists them)."""
    bus = NatsBus(nc)
    deadline = time.monotonic() + READY_TIMEOUT
    found: Any = None
    while time.monotonic() < deadline:
        answers = await bus.broadcast("bench.vote", {"message": "hello"}, 2.0, "bench-ready")
        found = await bus.answerers("bench.vote")
        if len(answers) == VOTERS and found == VOTERS:
            return None
    return f"not ready: {found} voters listed"


async def one(nc: NATS, bus: NatsBus, subject: str, n: int) -> bool:
    """One request (or broadcast) to `subject`; True when it was answered well."""
    try:
        if subject == "broadcast":
            answers = await bus.broadcast("bench.vote", {"message": "hello", "n": n}, 5.0,
                                          f"bench-{n}")
            return sum(a["status"] == "ok" for a in answers) == VOTERS
        return not is_error(await call(nc, subject, n))
    except Exception:
        return False


async def paired_latency(nc: NATS, systems: list[System], *, seconds: float,
                         warmup: float) -> list[Latency]:
    """One request at a time, the systems taking turns; each system's percentiles."""
    bus = NatsBus(nc)
    samples: list[list[int]] = [[] for _ in systems]
    errors = [0 for _ in systems]
    start, n = time.perf_counter(), 0
    turns = random.Random(7)
    order = list(enumerate(systems))
    while (now := time.perf_counter()) - start < warmup + seconds:
        turns.shuffle(order)  # whoever goes first after another process ran pays its wake-up
        for index, system in order:
            n += 1
            t0 = time.perf_counter_ns()
            ok = await one(nc, bus, system.subject, n)
            elapsed = time.perf_counter_ns() - t0
            if now - start >= warmup:
                if ok:
                    samples[index].append(elapsed)
                else:
                    errors[index] += 1
    found = []
    for taken, failed in zip(samples, errors, strict=True):
        taken.sort()
        found.append(Latency(percentile(taken, 50) / 1000, percentile(taken, 99) / 1000,
                             failed, len(taken)) if taken
                     else Latency(float("nan"), float("nan"), failed, 0))
    return found


async def measure(url: str, systems: list[System], args: argparse.Namespace) -> None:
    nc = await nats.connect(url)
    running = [s for s in systems if s.ok]
    try:
        for rnd in range(1, args.rounds + 1):
            found = await paired_latency(nc, running, seconds=args.seconds * len(running),
                                         warmup=0.2)
            for s, lat in zip(running, found, strict=True):
                s.latencies.append(lat)
                print(f"round {rnd}/{args.rounds} {s.label}: p50 {lat.p50_us:.0f} µs, "
                      f"p99 {lat.p99_us:.0f} µs", file=sys.stderr)
    finally:
        await nc.close()


def report(systems: list[System], args: argparse.Namespace) -> str:
    header = ["request (concurrency 1)", "p50 (µs)", "p99 (µs)", "errors"]
    rows = [
        [s.label, f"{s.p50():.0f}", f"{s.p99():.0f}", str(s.errors())]
        if s.ok else [s.label, f"unavailable: {s.unavailable}"]
        for s in systems
    ]
    raw, by_name, by_capability, cast = systems
    ratios = []
    if by_name.ok and by_capability.ok:
        ratios.append(f"by capability / by name p50 {by_capability.p50() / by_name.p50():.2f} "
                      f"(target ≤ {CAPABILITY_TARGET})")
    if by_name.ok and cast.ok:
        ratios.append(f"broadcast to {VOTERS} / one call by name p50 "
                      f"{cast.p50() / by_name.p50():.2f} (target ≤ {BROADCAST_TARGET})")
    if raw.ok and by_name.ok:
        ratios.append(f"call by name / raw call p50 {by_name.p50() / raw.p50():.2f}")
    return "\n".join([
        format_table(header, rows),
        "ratios: " + ("; ".join(ratios) or "n/a"),
        f"client: {loop_name()}; median of {args.rounds} rounds, the systems taking turns "
        f"request by request for {args.seconds:g} s each",
        *orphan_notes(),
        machine_line(),
    ])


def main() -> int:
    args = parse_args()
    systems = [
        System("raw call (bench.raw)", "mesh.agent.bench.raw"),
        System("call by name (bench.echo)", "mesh.agent.bench.echo"),
        System("call by capability (bench.echo-cap)", "mesh.capability.bench.echo-cap"),
        System(f"broadcast to {VOTERS} (bench.vote)", "broadcast"),
    ]
    server = start_nats()
    try:
        with Children() as children:
            run(start_all(server.url, children, systems))
            run(measure(server.url, systems, args))
    finally:
        server.stop()
    print(report(systems, args))
    return 0 if all(s.ok for s in systems) else 1


if __name__ == "__main__":
    sys.exit(main())

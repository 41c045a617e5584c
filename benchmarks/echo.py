"""Echo benchmark: mesh-runtime against raw nats-py and OpenAgentMesh 0.2, side by side.

    python benchmarks/echo.py [--rounds 3] [--seconds 3]

One nats-server; three servers in their own processes (raw responder, `mesh-runtime up`
on benchmarks/echo/mesh.yaml, an OpenAgentMesh agent); this process is the client.
Rounds are interleaved (raw, mesh, oam, raw, ...); each figure is the median of the rounds.
Exit status 1 when a system could not be measured.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import nats
from _client import System, latency, loop_name, run, throughput
from _harness import (
    BENCH_DIR,
    Children,
    format_table,
    machine_line,
    mesh_peer,
    oam_peer,
    orphan_notes,
    raw_peer,
    start_nats,
)

CONCURRENCY = 64
READY_TIMEOUT = 20.0
CLIENT_BUSY = 0.9  # a client this busy may be what limits throughput
TARGETS = {"mesh/raw throughput": 0.90, "mesh/oam throughput": 1.35, "mesh/raw p50": 1.10}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="throughput window per round")
    parser.add_argument(
        "--latency-seconds", type=float, default=2.0, help="concurrency-1 window per round"
    )
    return parser.parse_args()


def is_echo(reply: Any) -> bool:
    return reply == {"message": "hello", "n": 0}


async def measure(url: str, systems: list[System], args: argparse.Namespace, nats_pid: int) -> None:
    nc = await nats.connect(url)
    try:
        for rnd in range(1, args.rounds + 1):
            for s in (s for s in systems if s.ok):
                pid = s.child.pid if s.child else None
                tp = await throughput(
                    nc, s.subject, concurrency=CONCURRENCY, seconds=args.seconds,
                    warmup=0.5, watch=[pid, nats_pid],
                )  # fmt: skip
                lat = await latency(nc, s.subject, seconds=args.latency_seconds, warmup=0.2)
                s.throughputs.append(tp)
                s.latencies.append(lat)
                print(
                    f"round {rnd}/{args.rounds} {s.label}: {tp.rps:,.0f} req/s, "
                    f"p50 {lat.p50_us:.0f} µs, p99 {lat.p99_us:.0f} µs",
                    file=sys.stderr,
                )
    finally:
        await nc.close()


async def start_all(url: str, children: Children, systems: dict[str, System]) -> None:
    """raw and oam first, then mesh-runtime (so two registrations never race on the catalog)."""
    nc = await nats.connect(url)
    try:
        systems["raw"].launch(children, raw_peer(url))
        systems["oam"].launch(children, oam_peer(url))
        for key in ("raw", "oam"):
            await systems[key].wait_ready(nc, is_echo, READY_TIMEOUT)
        systems["mesh"].launch(children, mesh_peer(url, BENCH_DIR / "echo" / "mesh.yaml"))
        await systems["mesh"].wait_ready(nc, is_echo, READY_TIMEOUT)
    finally:
        await nc.close()


def ratio(a: System, b: System, value: str, target: str) -> str:
    if not (a.ok and b.ok):
        return f"{target} n/a"
    x, y = getattr(a, value)(), getattr(b, value)()
    bound = "≤" if value == "p50" else "≥"
    return f"{target} {x / y:.2f} (target {bound} {TARGETS[target]:.2f})"


def report(systems: dict[str, System], args: argparse.Namespace) -> str:
    header = ["system", "req/s@64", "p50@1 (µs)", "p99@1 (µs)", "errors"]
    header += ["cpu% client/peer/nats", "peer cpu µs/req"]
    rows = []
    for s in systems.values():
        if s.ok:
            row = [f"{s.rps():,.0f}", f"{s.p50():.0f}", f"{s.p99():.0f}", str(s.errors())]
            rows.append([s.label, *row, s.cpu(), s.peer_cpu_per_request()])
        else:
            rows.append([s.label, f"unavailable: {s.unavailable}"])
    raw, mesh, oam = systems["raw"], systems["mesh"], systems["oam"]
    ratios = ", ".join(
        [
            ratio(mesh, raw, "rps", "mesh/raw throughput"),
            ratio(mesh, oam, "rps", "mesh/oam throughput"),
            ratio(mesh, raw, "p50", "mesh/raw p50"),
        ]
    )
    busy = [s.label for s in systems.values() if s.ok and s.client_cpu() >= CLIENT_BUSY]
    warning = (
        [f"note: the client used ≥ {CLIENT_BUSY:.0%} of a core against {', '.join(busy)}: "
         "it may be the bottleneck there, which pulls throughput ratios toward 1"]
        if busy else []
    )  # fmt: skip
    return "\n".join(
        [
            format_table(header, rows),
            f"ratios: {ratios}",
            *warning,
            f"client: {loop_name()}; one nats-py connection, {CONCURRENCY} workers; "
            f"median of {args.rounds} interleaved rounds of {args.seconds:g} s "
            f"(+{args.latency_seconds:g} s at concurrency 1)",
            *orphan_notes(),
            machine_line(),
        ]
    )


def main() -> int:
    args = parse_args()
    systems = {
        "raw": System("raw", "mesh.agent.bench.raw"),
        "mesh": System("mesh-runtime", "mesh.agent.bench.mesh"),
        "oam": System("oam", "mesh.agent.bench.oam"),
    }
    server = start_nats()
    try:
        with Children() as children:
            run(start_all(server.url, children, systems))
            order = [systems[k] for k in ("raw", "mesh", "oam")]
            run(measure(server.url, order, args, server.process.pid))
    finally:
        server.stop()
    print(report(systems, args))
    return 0 if all(s.ok for s in systems.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

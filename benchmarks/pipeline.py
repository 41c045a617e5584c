"""Pipeline benchmark: a 3-step sequential pipeline's latency against one raw nats-py call,
with its runs recorded in the run journal (the default) and not (`record: false`), and
durable (`durable: true`: each step's result stored with JetStream's ack under a lease).

    python benchmarks/pipeline.py [--rounds 3] [--seconds 2] [--cpu 2000]

One nats-server; the raw responder of echo.py and `mesh-runtime up` on
benchmarks/pipeline/mesh.yaml (agents bench.p1..p3, pipelines bench.three and
bench.three_unrecorded) in their own
processes. Concurrency 1, interleaved rounds (raw, one mesh agent, the pipeline, ...);
each figure is the median of the rounds. With `--cpu N`, then the CPU time per request of
`up` (its process tree) and of nats-server, for the recorded and the unrecorded pipeline:
N requests each at concurrency 1, in the same interleaved rounds (CPU moves less than
latency on a busy machine). Exit status 1 when something could not be measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import nats
from _client import System, call, is_error, latency, loop_name, percentile, run
from _harness import (
    BENCH_DIR,
    Children,
    format_table,
    machine_line,
    mesh_peer,
    orphan_notes,
    raw_peer,
    start_nats,
)

READY_TIMEOUT = 20.0
TARGET = 3.3  # recorded pipeline p50 at most this many raw calls
RECORDING_TARGET = 1.10  # recorded pipeline p50 at most this many unrecorded ones
DURABLE_TARGET = 2.0  # durable pipeline p50 at most this many non-durable (recorded) ones
PAIRED: list[float] = []  # p50 µs of the recorded and the durable pipeline, taken in turn


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--seconds", type=float, default=2.0, help="window per system per round")
    parser.add_argument("--pairs", type=int, default=500,
                        help="durable and not durable calls taken in turn (default 500)")
    parser.add_argument("--cpu", type=int, default=0, metavar="N",
                        help="also CPU per request of up and nats-server, N requests per round")
    return parser.parse_args()


def says_hello(reply: Any) -> bool:
    return isinstance(reply, dict) and reply.get("message") == "hello"


async def start_all(url: str, children: Children, systems: list[System]) -> None:
    raw, agent, pipeline, unrecorded, durable = systems
    nc = await nats.connect(url)
    try:
        raw.launch(children, raw_peer(url))
        mesh = mesh_peer(url, BENCH_DIR / "pipeline" / "mesh.yaml")
        agent.launch(children, mesh)
        pipeline.child, pipeline.unavailable = agent.child, agent.unavailable
        unrecorded.child, unrecorded.unavailable = agent.child, agent.unavailable
        durable.child, durable.unavailable = agent.child, agent.unavailable
        for s in systems:
            await s.wait_ready(nc, says_hello, READY_TIMEOUT)
    finally:
        await nc.close()


async def measure(url: str, systems: list[System], args: argparse.Namespace) -> None:
    nc = await nats.connect(url)
    try:
        for rnd in range(1, args.rounds + 1):
            for s in (s for s in systems if s.ok):
                lat = await latency(nc, s.subject, seconds=args.seconds, warmup=0.2)
                s.latencies.append(lat)
                print(
                    f"round {rnd}/{args.rounds} {s.label}: p50 {lat.p50_us:.0f} µs, "
                    f"p99 {lat.p99_us:.0f} µs",
                    file=sys.stderr,
                )
    finally:
        await nc.close()


async def paired(url: str, a: str, b: str, pairs: int) -> tuple[float, float]:
    """p50 (µs) of `a` and of `b` called in turn, request by request (which goes first
    alternates), so a machine whose load changes slows both alike."""
    nc = await nats.connect(url)
    samples: dict[str, list[int]] = {a: [], b: []}
    try:
        for i in range(pairs):
            for subject in ((a, b) if i % 2 else (b, a)):
                t0 = time.perf_counter_ns()
                reply = await call(nc, subject, i)
                if not is_error(reply):
                    samples[subject].append(time.perf_counter_ns() - t0)
    finally:
        await nc.close()
    return tuple(percentile(sorted(s), 50) / 1000 for s in (samples[a], samples[b]))  # type: ignore[return-value]


async def cpu_rounds(url: str, server_pid: int, systems: list[System],
                     args: argparse.Namespace) -> list[str]:
    """CPU µs per request of up and nats-server, recorded against unrecorded, median of rounds."""
    from _profile_parts import cpu_ns, serving_pid

    pipeline, unrecorded = systems[2], systems[3]
    if not (pipeline.ok and unrecorded.ok) or pipeline.child is None:
        return []
    up_pid = pipeline.child.pid
    assert up_pid is not None
    per: dict[str, list[tuple[float, float]]] = {pipeline.label: [], unrecorded.label: []}
    body = b'{"message": "hello"}'
    nc = await nats.connect(url)
    try:
        serving_pid(pipeline.child)  # the worker exists by now
        for _ in range(args.rounds):
            for s in (pipeline, unrecorded):
                up0, srv0 = cpu_ns(up_pid), cpu_ns(server_pid)
                for _ in range(args.cpu):
                    await nc.request(s.subject, body, timeout=10)
                up1, srv1 = cpu_ns(up_pid), cpu_ns(server_pid)
                per[s.label].append(((up1 - up0) / args.cpu / 1000, (srv1 - srv0) / args.cpu / 1000))
    finally:
        await nc.close()
    rows = []
    for label, values in per.items():
        ups, srvs = sorted(v[0] for v in values), sorted(v[1] for v in values)
        rows.append([label, f"{ups[len(ups) // 2]:.0f}", f"{srvs[len(srvs) // 2]:.0f}"])
    up_ratio = float(rows[0][1]) / max(float(rows[1][1]), 1)
    all_ratio = (float(rows[0][1]) + float(rows[0][2])) / max(
        float(rows[1][1]) + float(rows[1][2]), 1)
    return ["", format_table(["CPU per request", "up (µs)", "nats-server (µs)"], rows),
            f"CPU ratios recorded / unrecorded: up {up_ratio:.2f}, up + nats-server "
            f"{all_ratio:.2f} (median of {args.rounds} rounds of {args.cpu} requests)"]


def report(systems: list[System], args: argparse.Namespace) -> str:
    header = ["call (concurrency 1)", "p50 (µs)", "p99 (µs)", "errors"]
    rows = [
        [s.label, f"{s.p50():.0f}", f"{s.p99():.0f}", str(s.errors())]
        if s.ok
        else [s.label, f"unavailable: {s.unavailable}"]
        for s in systems
    ]
    raw, agent, pipeline, unrecorded, durable = systems
    if raw.ok and pipeline.ok and unrecorded.ok:
        ratios = (
            f"ratios: pipeline p50 / raw call p50 {pipeline.p50() / raw.p50():.2f} "
            f"(target ≤ {TARGET}), unrecorded {unrecorded.p50() / raw.p50():.2f}; recorded / "
            f"unrecorded {pipeline.p50() / unrecorded.p50():.2f} (target ≤ {RECORDING_TARGET});"
            f" mesh agent p50 / raw call p50 {agent.p50() / raw.p50():.2f}"
        )
    else:
        ratios = "ratios: pipeline p50 / raw call p50 n/a"
    if durable.ok and pipeline.ok and PAIRED:
        plain, lasting = PAIRED
        per_step = (lasting - plain) / 3
        ratios += (f"\ndurable / not durable p50, {args.pairs} pairs taken in turn: "
                   f"{lasting / plain:.2f} (target ≤ {DURABLE_TARGET}; {lasting:.0f} / {plain:.0f}"
                   f" µs); durability costs {per_step / 1000:.2f} ms per step "
                   f"({(lasting - plain) / 1000:.2f} ms per 3-step run)")
    return "\n".join(
        [
            format_table(header, rows),
            ratios,
            f"client: {loop_name()}; median of {args.rounds} interleaved rounds "
            f"of {args.seconds:g} s each",
            *orphan_notes(),
            machine_line(),
        ]
    )


def main() -> int:
    args = parse_args()
    systems = [
        System("raw call (bench.raw)", "mesh.agent.bench.raw"),
        System("mesh agent (bench.p1)", "mesh.agent.bench.p1"),
        System("3-step pipeline, recorded (bench.three)", "mesh.agent.bench.three"),
        System("3-step pipeline, record: false", "mesh.agent.bench.three_unrecorded"),
        System("3-step pipeline, durable (bench.three_durable)",
               "mesh.agent.bench.three_durable"),
    ]
    server = start_nats()
    try:
        with Children() as children:
            run(start_all(server.url, children, systems))
            run(measure(server.url, systems, args))
            PAIRED.extend(run(paired(server.url, systems[2].subject, systems[4].subject,
                                     args.pairs)))
            cpu = run(cpu_rounds(server.url, server.process.pid, systems, args)) if args.cpu else []
    finally:
        server.stop()
    print(report(systems, args))
    if cpu:
        print("\n".join(cpu))
    return 0 if all(s.ok for s in systems) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Trigger benchmark: stream messages through a 1-step pipeline, and schedule drift.

    python benchmarks/triggers.py [--rounds 3] [--messages 3000] [--ticks 60]

Throughput: one nats-server; `mesh-runtime up` on benchmarks/triggers/mesh.yaml, whose
pipeline bench.one has a stream trigger (stream BENCH_TRIG, subject bench.trig.mesh: ack
on success); beside it, in its own process, a raw nats-py pull consumer
(peers/raw_pull_consumer.py, subject bench.trig.raw) that calls the same pipeline with
request/reply and acks each message on success, keeping as many requests in flight (64)
as the trigger does. Each round bursts N messages on one subject, then the other (order
alternating), and times from the first publish until the consumer has nothing pending or
unacked; the ratio is the median of each round's (the two bursts of a round run one right
after the other, so a machine whose load changes slows them alike).

Drift: `up` on benchmarks/triggers/ticks.yaml, an agent with `schedule: {every: 1s}` that
emits when it was called; drift is the time from each tick to the handler's start.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

import nats
from _client import run
from _harness import (
    BENCH_DIR,
    PEERS_DIR,
    Child,
    Children,
    cpu_seconds,
    format_table,
    machine_line,
    mesh_runtime_argv,
    orphan_notes,
    python_child,
    start_nats,
)

STREAM = "BENCH_TRIG"
TARGET = 0.8  # trigger throughput at least this share of the raw consumer's
DRIFT_TARGET_MS = 100.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--messages", type=int, default=3000, help="messages per burst")
    parser.add_argument("--ticks", type=int, default=60, help="schedule ticks (0: skip drift)")
    parser.add_argument("--pin", metavar="CPU", help="run up and the raw consumer on this one "
                        "CPU (taskset), so both systems have the same CPU to spend")
    return parser.parse_args()


def up(name: str, mesh: str) -> Child:
    argv = mesh_runtime_argv()
    if argv is None:
        raise SystemExit("the mesh-runtime command is not installed (pip install -e .)")
    return Child(name, [*argv, "up", "-f", str(BENCH_DIR / "triggers" / mesh), "--no-reload"])


async def wait_log(child: Child, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while child.log_path is None or text not in child.log_path.read_text(errors="replace"):
        if child.exit_code() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{child.name} did not say {text!r}: {child.last_line()}")
        await asyncio.sleep(0.05)


async def drained(js: Any, durable: str, last: int, timeout: float = 300) -> float:
    """When the consumer has acked every message up to stream sequence `last` and has
    nothing pending or unacked (time.perf_counter())."""
    deadline = time.monotonic() + timeout
    while True:
        info = await js.consumer_info(STREAM, durable)
        if (info.ack_floor.stream_seq >= last and info.num_pending == 0
                and info.num_ack_pending == 0):
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise SystemExit(f"{durable}: still {info.num_pending} pending after {timeout}s")
        await asyncio.sleep(0.01)


async def burst(nc: Any, subject: str, durable: str, count: int) -> float:
    """Messages per second through one consumer for a burst of `count` messages."""
    js = nc.jetstream()
    body = b'{"message": "hello", "n": 1}'
    last = (await js.stream_info(STREAM)).state.last_seq + count  # one burst at a time
    started = time.perf_counter()
    for _ in range(count):
        await nc.publish(subject, body)  # stored by the stream; no ack to wait for
    await nc.flush()
    return count / (await drained(js, durable, last) - started)


def cpu(*children: Child) -> float:
    return sum(cpu_seconds(c.pid) or 0.0 for c in children)


async def throughput(url: str, children: Children,
                     args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, float]]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=STREAM, subjects=["bench.trig.>"])
    mesh = children.start(_pinned(_at(up("mesh-runtime", "mesh.yaml"), url), args.pin))
    await wait_log(mesh, "ready:")
    raw = children.start(_pinned(python_child(
        "raw-consumer", PEERS_DIR / "raw_pull_consumer.py", url, STREAM, "bench.trig.raw",
        "bench.one", "64"), args.pin))
    await wait_log(raw, "ready")
    await _consumer(js, "mesh-trigger-bench_one")
    rates: dict[str, list[float]] = {"raw": [], "mesh": []}
    spent = {"raw": 0.0, "mesh": 0.0}  # CPU seconds of the serving processes, in all rounds
    await burst(nc, "bench.trig.raw", "raw-bench", 200)  # warm both up
    await burst(nc, "bench.trig.mesh", "mesh-trigger-bench_one", 200)
    for rnd in range(1, args.rounds + 1):
        order = ["raw", "mesh"] if rnd % 2 else ["mesh", "raw"]
        for system in order:
            subject, durable = (("bench.trig.raw", "raw-bench") if system == "raw"
                                else ("bench.trig.mesh", "mesh-trigger-bench_one"))
            before = cpu(mesh, raw)
            rate = await burst(nc, subject, durable, args.messages)
            spent[system] += cpu(mesh, raw) - before
            rates[system].append(rate)
            print(f"round {rnd}/{args.rounds} {system}: {rate:.0f} msg/s", file=sys.stderr)
    await nc.close()
    mesh.stop()
    raw.stop()
    per = {system: spent[system] / (args.messages * args.rounds) * 1e6 for system in spent}
    return rates, per


async def drift(url: str, children: Children, ticks: int) -> list[float]:
    nc = await nats.connect(url)
    seen: list[float] = []
    done = asyncio.Event()

    async def on(msg: Any) -> None:
        import json

        event = json.loads(msg.data)
        seen.append((event["got"] - event["at"]) * 1000)
        print(f"tick {len(seen)}/{ticks}: {seen[-1]:.1f} ms", file=sys.stderr)
        if len(seen) >= ticks:
            done.set()

    await nc.subscribe("mesh.agent.bench.tick.events", cb=on)
    child = children.start(_at(up("mesh-ticks", "ticks.yaml"), url))
    await wait_log(child, "ready:")
    await asyncio.wait_for(done.wait(), ticks + 30)
    await nc.close()
    child.stop()
    return seen


def _pinned(child: Child, cpu: str | None) -> Child:
    if cpu is not None:
        child.argv = ["taskset", "-c", cpu, *child.argv]
    return child


def _at(child: Child, url: str) -> Child:
    child.argv = [*child.argv, "--nats", url]
    return child


async def _consumer(js: Any, durable: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            await js.consumer_info(STREAM, durable)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise SystemExit(f"the trigger made no consumer {durable}") from None
            await asyncio.sleep(0.05)


def report(rates: dict[str, list[float]], per: dict[str, float], drifts: list[float],
           args: argparse.Namespace) -> str:
    pairs = [m / r for m, r in zip(rates["mesh"], rates["raw"], strict=True)]
    rows = [[name, f"{statistics.median(r):.0f}", f"{min(r):.0f}", f"{max(r):.0f}"]
            for name, r in (("raw nats-py pull consumer -> bench.one", rates["raw"]),
                            ("stream trigger -> bench.one", rates["mesh"]))]
    lines = [format_table(["messages/s (ack on success)", "median", "min", "max"], rows),
             f"ratio: trigger / raw consumer {statistics.median(pairs):.2f} (target ≥ {TARGET}; "
             f"the median of each round's ratio, min {min(pairs):.2f}, max {max(pairs):.2f}); "
             f"{args.rounds} interleaved rounds of {args.messages} messages"
             + (f"; up and the raw consumer pinned to CPU {args.pin}" if args.pin else ""),
             f"CPU per message (up and the raw consumer's process): trigger {per['mesh']:.0f} µs, "
             f"raw consumer {per['raw']:.0f} µs, ratio raw / trigger "
             f"{per['raw'] / per['mesh']:.2f}"]
    if drifts:
        ordered = sorted(drifts)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        lines.append(f"schedule drift over {len(drifts)} ticks of every 1s: p50 "
                     f"{statistics.median(drifts):.1f} ms, p99 {p99:.1f} ms, max "
                     f"{max(drifts):.1f} ms (target p99 < {DRIFT_TARGET_MS:g} ms)")
    return "\n".join([*lines, *orphan_notes(), machine_line()])


def main() -> int:
    args = parse_args()
    server = start_nats()
    try:
        with Children() as children:
            rates, per = run(throughput(server.url, children, args))
            drifts = run(drift(server.url, children, args.ticks)) if args.ticks else []
    finally:
        server.stop()
    print(report(rates, per, drifts, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

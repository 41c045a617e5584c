"""Echo benchmark: mesh-runtime against raw nats-py and OpenAgentMesh 0.2, side by side.

    python benchmarks/echo.py [--rounds 5] [--seconds 3] [--no-io] [--before DIR]

One nats-server; three servers in their own processes (raw responder, `mesh-runtime up`
on benchmarks/echo/mesh.yaml, an OpenAgentMesh agent); this process is the client.
Rounds are interleaved (raw, mesh, oam, raw, ...); each figure is the median of the rounds,
and a second table shows min / median / max, so a reader sees the noise.
Then, unless --no-io, the I/O-bound echo: each server's second agent (bench.raw-io,
bench.mesh-io, bench.oam-io) awaits 1 ms of simulated I/O before it echoes.
Unless --no-tracing, three more systems in the same rounds: `up` from the code before
tracing, and `up` exporting spans to an OTLP/HTTP sink at sample 1.0 and 0.1; their CPU
per request, and today's (propagation only), over the code before's.
With `--before DIR` (a copy of the code before a change, such as `git archive main runtime
| tar -x -C DIR`), `up` from that copy is measured too, in the same interleaved rounds, and a
line gives the ratios now / before.
Exit status 1 when a system could not be measured.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
from _client import System, latency, loop_name, run, throughput
from _harness import (
    BENCH_DIR,
    Child,
    Children,
    child_env,
    format_table,
    machine_line,
    mesh_peer,
    oam_peer,
    orphan_notes,
    raw_peer,
    start_nats,
)
from _tracing import TracingRows

CONCURRENCY = 64
READY_TIMEOUT = 20.0
CLIENT_BUSY = 0.9  # a client this busy may be what limits throughput
IO_MS = 1  # the simulated I/O of the I/O-bound agents (see their handlers)
IO_LATENCY_SECONDS = 0.5  # I/O-bound concurrency-1 window per round (for 1/latency)
# The serving process's CPU per request is the steadiest figure on a shared machine.
TARGETS = {"mesh/raw cpu per request": 1.10, "mesh/oam cpu per request": 1.00,
           "mesh/raw throughput": 0.95, "mesh/raw p50": 1.10}
IO_TARGET = 20.0  # the I/O-bound echo: mesh-runtime's req/s@64 over each peer's


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--seconds", type=float, default=3.0, help="throughput window per round")
    parser.add_argument(
        "--latency-seconds", type=float, default=2.0, help="concurrency-1 window per round"
    )
    parser.add_argument(
        "--no-io", dest="io", action="store_false", help="skip the I/O-bound echo"
    )
    parser.add_argument(
        "--no-tracing", dest="tracing", action="store_false",
        help="skip the tracing rows (up before tracing, exporting at sample 1.0 and 0.1)")
    parser.add_argument("--io-rounds", type=int, default=3, help="I/O-bound rounds (default 3)")
    parser.add_argument("--before", type=Path, metavar="DIR",
                        help="also measure `up` from the code in DIR (a copy of the runtime "
                             "package before a change), interleaved")
    parser.add_argument(
        "--io-seconds", type=float, default=1.0, help="I/O-bound throughput window per round"
    )
    return parser.parse_args()


def is_echo(reply: Any) -> bool:
    return reply == {"message": "hello", "n": 0}


async def measure(
    url: str, systems: list[System], rounds: int, seconds: float, latency_seconds: float,
    nats_pid: int,
) -> None:  # fmt: skip
    nc = await nats.connect(url)
    try:
        for rnd in range(1, rounds + 1):
            for s in (s for s in systems if s.ok):
                pid = s.child.pid if s.child else None
                tp = await throughput(
                    nc, s.subject, concurrency=CONCURRENCY, seconds=seconds,
                    warmup=0.5, watch=[pid, nats_pid],
                )  # fmt: skip
                lat = await latency(nc, s.subject, seconds=latency_seconds, warmup=0.2)
                s.throughputs.append(tp)
                s.latencies.append(lat)
                print(
                    f"round {rnd}/{rounds} {s.label}: {tp.rps:,.0f} req/s, "
                    f"p50 {lat.p50_us:.0f} µs, p99 {lat.p99_us:.0f} µs",
                    file=sys.stderr,
                )
    finally:
        await nc.close()


async def start_all(
    url: str, children: Children, systems: dict[str, System], io_systems: dict[str, System],
    tracing: TracingRows | None = None,
) -> None:
    """raw and oam first, then mesh-runtime (so two registrations never race on the catalog).

    Each I/O-bound agent is served by the same process as its system's zero-await echo.
    """
    io = bool(io_systems)
    nc = await nats.connect(url)
    try:
        systems["raw"].launch(children, raw_peer(url, io=io))
        systems["oam"].launch(children, oam_peer(url, io=io))
        for key in ("raw", "oam"):
            await systems[key].wait_ready(nc, is_echo, READY_TIMEOUT)
        systems["mesh"].launch(children, mesh_peer(url, BENCH_DIR / "echo" / "mesh.yaml"))
        await systems["mesh"].wait_ready(nc, is_echo, READY_TIMEOUT)
        if tracing is not None:
            tracing.launch(url, children)
            for s in tracing.systems.values():
                await s.wait_ready(nc, is_echo, READY_TIMEOUT)
        for key, s in io_systems.items():
            server = systems[key]
            s.child, s.unavailable = server.child, server.unavailable
            await s.wait_ready(nc, is_echo, READY_TIMEOUT)
    finally:
        await nc.close()


def before_peer(url: str, code: Path, folder: Path) -> Child | str:
    """`up` from the code in `code` on the echo mesh, its agent renamed bench.before."""
    if not (code / "runtime" / "__main__.py").exists():
        return f"no runtime package in {code}"
    text = (BENCH_DIR / "echo" / "mesh.yaml").read_text().replace("bench.mesh", "bench.before")
    (folder / "mesh.yaml").write_text(text)
    (folder / "handlers.py").write_text((BENCH_DIR / "echo" / "handlers.py").read_text())
    return Child("mesh-before", [sys.executable, "-m", "runtime", "up", "-f",
                                 str(folder / "mesh.yaml"), "--nats", url, "--no-reload"],
                 cwd=folder, env=child_env(PYTHONPATH=str(code.resolve())))


def before_line(systems: dict[str, System]) -> list[str]:
    """now / before ratios, when the code before was measured too."""
    now, before = systems["mesh"], systems.get("before")
    if before is None:
        return []
    if not (now.ok and before.ok):
        return ["now / before: n/a"]
    return [f"now / before: throughput {now.rps() / before.rps():.2f}, cpu per request "
            f"{now.cpu_per_request() / before.cpu_per_request():.2f}, p50 "
            f"{now.p50() / before.p50():.2f} (1.00 is no change)"]


def ratio(a: System, b: System, value: str, target: str) -> str:
    if not (a.ok and b.ok):
        return f"{target} n/a"
    x, y = getattr(a, value)(), getattr(b, value)()
    bound = "≥" if value == "rps" else "≤"
    return f"{target} {x / y:.2f} (target {bound} {TARGETS[target]:.2f})"


def client_busy_note(systems: dict[str, System]) -> list[str]:
    busy = [s.label for s in systems.values() if s.ok and s.client_cpu() >= CLIENT_BUSY]
    return (
        [f"note: the client used ≥ {CLIENT_BUSY:.0%} of a core against {', '.join(busy)}: "
         "it may be the bottleneck there, which pulls throughput ratios toward 1"]
        if busy else []
    )  # fmt: skip


def system_rows(systems: dict[str, System], third: Callable[[System], str]) -> list[list[str]]:
    """A table row per system: req/s, p50, a third latency column, errors, CPU."""
    rows = []
    for s in systems.values():
        if s.ok:
            row = [f"{s.rps():,.0f}", f"{s.p50():.0f}", third(s), str(s.errors())]
            rows.append([s.label, *row, s.cpu(), s.peer_cpu_per_request()])
        else:
            rows.append([s.label, f"unavailable: {s.unavailable}"])
    return rows


def report_io(systems: dict[str, System], args: argparse.Namespace) -> list[str]:
    """The I/O-bound echo: its table, its ratios, and how each system runs a request."""
    header = ["system (1 ms I/O)", "req/s@64", "p50@1 (µs)", "1/p50@1 (req/s)", "errors"]
    header += ["cpu% client/peer/nats", "peer cpu µs/req"]
    rows = system_rows(systems, lambda s: f"{1e6 / s.p50():,.0f}")
    raw, mesh, oam = systems["raw"], systems["mesh"], systems["oam"]
    ratios = [
        f"{name} {mesh.rps() / other.rps():.2f} (target ≥ {IO_TARGET:g})" if mesh.ok and other.ok
        else f"{name} n/a"
        for name, other in (("mesh/raw", raw), ("mesh/oam", oam))
    ]
    return [
        "",
        f"I/O-bound echo: each handler awaits asyncio.sleep({IO_MS / 1000:g}) ({IO_MS} ms of "
        "simulated I/O, like a database or model call) before it echoes",
        format_table(header, rows),
        f"I/O-bound ratios (req/s@64): {', '.join(ratios)}",
        *client_busy_note(systems),
        "raw-io is written the way a hand-written nats-py responder is: it awaits the I/O inside "
        "the subscription callback, and nats-py runs one subscription's callbacks one at a time; "
        "OpenAgentMesh 0.2 awaits its handler inside that callback too. Both serve one request "
        "at a time per agent, so req/s@64 is bounded by 1/latency (the 1/p50@1 column). "
        f"mesh-runtime runs each request in its own task, up to the agent's concurrency "
        f"({CONCURRENCY}).",
        f"median of {args.io_rounds} interleaved rounds of {args.io_seconds:g} s "
        f"(+{IO_LATENCY_SECONDS:g} s at concurrency 1), same client",
    ]


def report_tracing(tracing: TracingRows, mesh: System) -> list[str]:
    """The tracing rows: CPU per request against `up` from the code before tracing."""
    header = ["system", "req/s@64", "p50@1 (µs)", "p99@1 (µs)", "errors"]
    header += ["cpu% client/peer/nats", "peer cpu µs/req"]
    systems = {"mesh": mesh, **tracing.systems}
    return [
        "",
        "Tracing: mesh-runtime (trace context on every hop, no spans: the default) and `up` "
        "exporting spans over OTLP/HTTP to a sink, against `up` from the code before tracing",
        format_table(header, system_rows(systems, lambda s: f"{s.p99():.0f}")),
        format_table(["spread (min / median / max)", "req/s@64", "p50@1 (µs)",
                      "peer cpu µs/req"],
                     [[s.label, *s.spread()] for s in systems.values() if s.ok]),
        f"tracing ratios (peer cpu per request): {', '.join(tracing.ratios(mesh))}",
    ]


def report(
    systems: dict[str, System], args: argparse.Namespace, io_systems: dict[str, System],
    tracing: TracingRows | None = None,
) -> str:
    header = ["system", "req/s@64", "p50@1 (µs)", "p99@1 (µs)", "errors"]
    header += ["cpu% client/peer/nats", "peer cpu µs/req"]
    rows = system_rows(systems, lambda s: f"{s.p99():.0f}")
    raw, mesh, oam = systems["raw"], systems["mesh"], systems["oam"]
    ratios = ", ".join(
        [
            ratio(mesh, raw, "cpu_per_request", "mesh/raw cpu per request"),
            ratio(mesh, oam, "cpu_per_request", "mesh/oam cpu per request"),
            ratio(mesh, raw, "rps", "mesh/raw throughput"),
            ratio(mesh, raw, "p50", "mesh/raw p50"),
        ]
    )
    warning = client_busy_note(systems)
    return "\n".join(
        [
            format_table(header, rows),
            f"ratios: {ratios}",
            format_table(["spread (min / median / max)", "req/s@64", "p50@1 (µs)",
                          "peer cpu µs/req"],
                         [[s.label, *s.spread()] for s in systems.values() if s.ok]),
            *warning,
            *before_line(systems),
            f"client: {loop_name()}; one nats-py connection, {CONCURRENCY} workers; "
            f"median of {args.rounds} interleaved rounds of {args.seconds:g} s "
            f"(+{args.latency_seconds:g} s at concurrency 1)",
            *(report_tracing(tracing, mesh) if tracing is not None else []),
            *(report_io(io_systems, args) if io_systems else []),
            *orphan_notes(),
            machine_line(),
        ]
    )


async def _wait_before(url: str, system: System) -> None:
    nc = await nats.connect(url)
    try:
        await system.wait_ready(nc, is_echo, READY_TIMEOUT)
    finally:
        await nc.close()


def main() -> int:
    args = parse_args()
    systems = {
        "raw": System("raw", "mesh.agent.bench.raw"),
        "mesh": System("mesh-runtime", "mesh.agent.bench.mesh"),
        "oam": System("oam", "mesh.agent.bench.oam"),
    }
    io_systems = (
        {
            "raw": System("raw-io", "mesh.agent.bench.raw-io"),
            "mesh": System("mesh-runtime-io", "mesh.agent.bench.mesh-io"),
            "oam": System("oam-io", "mesh.agent.bench.oam-io"),
        }
        if args.io
        else {}
    )
    tracing = TracingRows() if args.tracing else None
    if args.before is not None:
        systems["before"] = System("mesh-before", "mesh.agent.bench.before")
    server = start_nats()
    try:
        with Children() as children, tempfile.TemporaryDirectory() as folder:
            run(start_all(server.url, children, systems, io_systems, tracing))
            if args.before is not None:
                systems["before"].launch(children, before_peer(server.url, args.before,
                                                               Path(folder)))
                run(_wait_before(server.url, systems["before"]))
            order = [systems[k] for k in ("raw", "mesh", "oam", "before") if k in systems]
            if tracing is not None:  # interleaved with the others, round by round
                order += list(tracing.systems.values())
            pid = server.process.pid
            run(measure(server.url, order, args.rounds, args.seconds, args.latency_seconds, pid))
            if io_systems:
                order = [io_systems[k] for k in ("raw", "mesh", "oam")]
                run(measure(
                    server.url, order, args.io_rounds, args.io_seconds, IO_LATENCY_SECONDS, pid
                ))  # fmt: skip
    finally:
        server.stop()
        if tracing is not None:
            tracing.close()
    print(report(systems, args, io_systems, tracing))
    everything = [*systems.values(), *io_systems.values(),
                  *(tracing.systems.values() if tracing is not None else [])]
    return 0 if all(s.ok for s in everything) else 1


if __name__ == "__main__":
    sys.exit(main())

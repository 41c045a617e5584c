"""Where the serving process's CPU goes per echo request: mesh-runtime against raw nats-py.

    python benchmarks/profile_echo.py [--requests 20000] [--rounds 5]
    python benchmarks/profile_echo.py --py-spy [--seconds 15]
    python benchmarks/profile_echo.py --callgrind [--requests 3000]
    [--compare CHECKOUT] [--tracing] with any of the above

Default: CPU µs per request of each serving process (raw responder, `mesh-runtime up` on
benchmarks/echo/mesh.yaml), `--requests` at concurrency 64 per round, rounds interleaved;
min, median and max. `--py-spy`: py-spy samples each serving process under the same load
and the samples are sorted into the parts of the request path (table of µs per request).
`--callgrind`: each serving process runs under valgrind's callgrind, which counts the
instructions of exactly `--requests` requests: the same figure on a busy machine.
`--tracing`: also `up` exporting spans to an OTLP/HTTP sink at sample 1.0, 0.1 and 0.0
(the export thread's CPU included; under callgrind, batches of 256 leave by count only,
as they would at full speed, and the spans of an unfilled batch are not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import nats
from _client import call, run
from _harness import (
    BENCH_DIR,
    ROOT,
    Child,
    Children,
    child_env,
    format_table,
    machine_line,
    raw_peer,
    start_nats,
)
from _profile_parts import PARTS, cpu_ns, instructions, parts, serving_pid
from _tracing import SAMPLES, echo_mesh, free_port, sink, tracing_yaml

CONCURRENCY = 64


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--py-spy", dest="pyspy", action="store_true", help="sample with py-spy")
    parser.add_argument("--seconds", type=float, default=15.0, help="py-spy window per system")
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    parser.add_argument("--compare", type=Path, metavar="CHECKOUT",
                        help="also serve with the runtime package of another checkout")
    parser.add_argument("--tracing", action="store_true",
                        help="also serve with spans exported to an OTLP/HTTP sink, sample 1.0 "
                        "and 0.1")
    return parser.parse_args()


async def send(nc: nats.NATS, subject: str, total: int) -> int:
    """`total` requests, CONCURRENCY at a time; how many failed."""
    left = total
    failed = 0

    async def worker() -> None:
        nonlocal left, failed
        while left > 0:
            left -= 1
            try:
                msg = await call(nc, subject, left)
                failed += bool(msg.headers and msg.headers.get("X-Mesh-Status") == "error")
            except Exception:
                failed += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return failed


async def ready(nc: nats.NATS, subject: str, child: Child, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.exit_code() is not None:
            raise SystemExit(f"{child.name} exited: {child.last_line()}")
        try:
            await call(nc, subject, 0, timeout=1.0)
            return
        except Exception:
            await asyncio.sleep(0.2)
    raise SystemExit(f"{child.name} not ready within {timeout:.0f} s")


@dataclass
class Served:
    """A serving process under test, on its own NATS server when it shares a subject."""

    name: str
    child: Child
    url: str
    subject: str


def traced(url: str, wrap: list[str], folder: Path, kids: Children) -> list[Served]:
    """`mesh-runtime up` exporting spans to a sink, at sample 1.0, 0.1 and 0.0.

    Under a profiler a run lasts ~50x longer, so spans sent every 5 s would leave in ~50x
    smaller batches than at full speed (where a batch of 512 fills within seconds) and
    their HTTP cost would be overstated: there, batches leave by count alone (256)."""
    batching = ({"OTEL_BSP_SCHEDULE_DELAY": "3600000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "256"}
                if wrap else {})
    port = free_port()
    kids.start(sink(port))
    found = []
    for key, sample in {**SAMPLES, "export-0.0": 0.0}.items():  # 0.0: the decision alone
        mesh = echo_mesh(folder, key, tracing_yaml(port, sample))
        env = child_env(**batching)
        env["PYTHONPATH"] = str(ROOT)
        child = Child(f"mesh-{key}", [*wrap, sys.executable, "-m", "runtime", "up", "-f",
                                      str(mesh), "--nats", url, "--no-reload"],
                      cwd=mesh.parent, env=env)
        found.append(Served(f"mesh-runtime {key.replace('-', ' ')}", child, url,
                            f"mesh.agent.bench.{key.replace('.', '')}"))
    return found


def servers(urls: list[str], wrap: list[str], compare: Path | None) -> list[Served]:
    """The raw responder and `mesh-runtime up` (and one from `compare`, a checkout of another
    version, on the second URL), each run under `wrap` (a profiler, or nothing)."""
    raw = raw_peer(urls[0])
    raw.argv = [*wrap, *raw.argv]
    found = [Served("raw", raw, urls[0], "mesh.agent.bench.raw"),
             Served("mesh-runtime", mesh_child("mesh-runtime", ROOT, urls[0], wrap), urls[0],
                    "mesh.agent.bench.mesh")]
    if compare is not None:
        found.append(Served(f"mesh-runtime ({compare.name})",
                            mesh_child("mesh-compare", compare, urls[1], wrap), urls[1],
                            "mesh.agent.bench.mesh"))
    return found


def mesh_child(name: str, root: Path, url: str, wrap: list[str]) -> Child:
    """`python -m runtime up` on the echo mesh, importing `runtime` from `root`."""
    env = child_env()
    env["PYTHONPATH"] = str(root)
    mesh_file = BENCH_DIR / "echo" / "mesh.yaml"
    return Child(name, [*wrap, sys.executable, "-m", "runtime", "up", "-f", str(mesh_file),
                        "--nats", url, "--no-reload"], cwd=root, env=env)


def spread(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


async def connected(served: list[Served], warmup: int, timeout: float = 120.0
                    ) -> dict[str, nats.NATS]:
    """A client connection per NATS server, once every process answers (then warmed up)."""
    clients: dict[str, nats.NATS] = {}
    for s in served:
        if s.url not in clients:
            clients[s.url] = await nats.connect(s.url)
        await ready(clients[s.url], s.subject, s.child, timeout)
        await send(clients[s.url], s.subject, warmup)
    return clients


async def cpu_rounds(served: list[Served], args: argparse.Namespace) -> str:
    costs: dict[str, list[float]] = {s.name: [] for s in served}
    clients = await connected(served, 2000)
    try:
        for rnd in range(1, args.rounds + 1):
            for s in served:
                before = cpu_ns(s.child.pid)
                failed = await send(clients[s.url], s.subject, args.requests)
                costs[s.name].append((cpu_ns(s.child.pid) - before) / args.requests / 1e3)
                print(f"round {rnd} {s.name}: {costs[s.name][-1]:.1f} µs/req, {failed} failed",
                      file=sys.stderr)
    finally:
        for nc in clients.values():
            await nc.close()
    raw = statistics.median(costs["raw"])
    rows = [[name, spread(values), f"{statistics.median(values) / raw:.2f}"]
            for name, values in costs.items()]
    return "\n".join([
        format_table(["serving process", "cpu µs/req min / median / max", "/raw"], rows),
        f"{args.rounds} interleaved rounds of {args.requests:,} requests at concurrency "
        f"{CONCURRENCY}; /raw compares medians",
    ])


async def pyspy_profile(served: list[Served], args: argparse.Namespace, out: Path) -> str:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    columns: dict[str, Counter[str]] = {}
    totals: dict[str, float] = {}
    clients = await connected(served, 2000)
    try:
        for s in served:
            raw_file = out / f"{s.child.name}.txt"
            record = subprocess.Popen(
                [spy, "record", "-p", str(serving_pid(s.child)), "-f", "raw", "-r", "500", "-o",
                 str(raw_file), "-d", str(int(args.seconds)), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            sent = 0
            before = cpu_ns(s.child.pid)
            start = time.monotonic()
            while record.poll() is None and time.monotonic() - start < args.seconds + 30:
                await send(clients[s.url], s.subject, 2000)
                sent += 2000
            totals[s.name] = (cpu_ns(s.child.pid) - before) / sent / 1e3
            columns[s.name] = parts(raw_file)
            print(f"{s.name}: {sent:,} requests, {totals[s.name]:.1f} µs/req", file=sys.stderr)
    finally:
        for nc in clients.values():
            await nc.close()
    rows = []
    for part in [*PARTS, "other"]:
        cells = []
        for s in served:
            share = columns[s.name][part] / max(1, sum(columns[s.name].values()))
            cells.append(f"{share * totals[s.name]:.1f}")
        if any(c != "0.0" for c in cells):
            rows.append([part, *cells])
    rows.append(["total (measured CPU)", *(f"{totals[s.name]:.1f}" for s in served)])
    return "\n".join([
        format_table(["part of the request path (µs/req)", *(s.name for s in served)], rows),
        f"py-spy samples at 500 Hz, {args.seconds:g} s per system (--nonblocking); each part's "
        "share of the samples times the measured CPU per request",
    ])


async def callgrind_counts(served: list[Served], args: argparse.Namespace, out: Path) -> str:
    control = shutil.which("callgrind_control")
    if control is None:
        raise SystemExit("callgrind_control not found: install valgrind")
    per_request: dict[str, float] = {}
    clients = await connected(served, 500, timeout=600)
    try:
        for s in served:
            worker = serving_pid(s.child)
            pid = str(worker)
            subprocess.run([control, "-i", "on", pid], check=True, stdout=subprocess.DEVNULL)
            failed = await send(clients[s.url], s.subject, args.requests)
            if args.tracing:  # the last export of spans (every 5 s) inside the window: its cost
                await asyncio.sleep(6.0)  # is the requests'; every system waits alike
            subprocess.run([control, "-d", pid], check=True, stdout=subprocess.DEVNULL)
            subprocess.run([control, "-i", "off", pid], check=True, stdout=subprocess.DEVNULL)
            per_request[s.name] = instructions(out, worker) / args.requests
            print(f"{s.name}: {per_request[s.name]:,.0f} instructions/req, {failed} failed",
                  file=sys.stderr)
    finally:
        for nc in clients.values():
            await nc.close()
    raw = per_request["raw"]
    rows = [[name, f"{n:,.0f}", f"{n / raw:.2f}"] for name, n in per_request.items()]
    return "\n".join([
        format_table(["serving process", "instructions/req", "/raw"], rows),
        f"callgrind: {args.requests:,} requests at concurrency {CONCURRENCY}, after 500 "
        "unmeasured; user-space instructions only (the kernel's share of a write is not here)",
    ])


def main() -> int:
    args = parse_args()
    nats_servers = [start_nats()]
    out = Path(tempfile.mkdtemp(prefix="mesh-profile-"))
    try:
        if args.compare is not None:
            nats_servers.append(start_nats())
        wrap: list[str] = []
        if args.callgrind:
            wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=yes",
                    f"--callgrind-out-file={out}/callgrind.out.%p"]
        with Children() as kids:
            served = servers([n.url for n in nats_servers], wrap, args.compare)
            if args.tracing:
                served += traced(nats_servers[0].url, wrap, out, kids)
            for s in served:
                kids.start(s.child)
            if args.callgrind:
                table = run(callgrind_counts(served, args, out))
            elif args.pyspy:
                table = run(pyspy_profile(served, args, out))
            else:
                table = run(cpu_rounds(served, args))
    finally:
        for server in nats_servers:
            server.stop()
        shutil.rmtree(out, ignore_errors=True)
    loop = os.environ.get("MESH_BENCH_CLIENT_LOOP", "asyncio")
    print(table)
    print(f"client: {loop}; {machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

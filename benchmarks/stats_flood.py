"""$SRV flood benchmark: what 3,000 STATS requests cost a big `up` and its callers.

    python benchmarks/stats_flood.py [--agents 1002] [--requests 3000] [--calls 200]

For the code before $SRV answers were bounded (extracted with `git archive` into a
temporary folder) and for the code now, one after the other on one nats-server: a
`up` serving --agents generated agents; a victim's echo p50 over --calls sequential
calls while idle, then while a stranger sends --requests empty `$SRV.STATS` requests
(reply subject of its choosing); the answers and megabytes the stranger drew.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
from _harness import ROOT, format_table, import_runtime, machine_line
from _startup import generate_mesh
from health import Up

import_runtime()
from runtime.nats.embedded import NatsServer  # noqa: E402

VICTIM = "gen.group00.agent0007"


def code_before(folder: Path) -> Path | None:
    """The runtime as it was just before $SRV answers were bounded (micro_limits.py)."""
    log = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--",
                          "runtime/observe/micro_limits.py"], cwd=ROOT, capture_output=True,
                         text=True)
    commits = log.stdout.split()
    if log.returncode != 0 or not commits:
        return None
    archive = subprocess.run(["git", "archive", f"{commits[-1]}^", "runtime"], cwd=ROOT,
                             capture_output=True)
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


async def p50_echo(nc: nats.NATS, calls: int) -> float:
    took = []
    body = json.dumps({"text": "hello"}).encode()
    for _ in range(calls):
        began = time.perf_counter()
        await nc.request(f"mesh.agent.{VICTIM}", body, timeout=30)
        took.append(time.perf_counter() - began)
    return sorted(took)[len(took) // 2] * 1000


async def measure(url: str, requests: int, calls: int) -> tuple[float, float, int, float]:
    """(p50 idle ms, p50 under the flood ms, answers drawn, MB drawn)."""
    nc = await nats.connect(url)
    flooder = await nats.connect(url)
    got = [0, 0]
    last = [time.monotonic()]

    async def on(msg: object) -> None:
        got[0] += 1
        got[1] += len(msg.data)  # type: ignore[attr-defined]
        last[0] = time.monotonic()

    try:
        idle = await p50_echo(nc, calls)
        inbox = flooder.new_inbox()
        await flooder.subscribe(inbox, cb=on, pending_bytes_limit=1 << 31)

        async def flood() -> None:
            for _ in range(requests):
                await flooder.publish("$SRV.STATS", b"", reply=inbox)
            await flooder.flush()

        task = asyncio.ensure_future(flood())
        flooded = await p50_echo(nc, calls)
        await task
        while time.monotonic() - last[0] < 2.0:
            await asyncio.sleep(0.1)
        return idle, flooded, got[0], got[1] / 1e6
    finally:
        await nc.close()
        await flooder.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1002)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name, NatsServer() as server:
        tmp = Path(tmp_name)
        (tmp / "before").mkdir()
        (tmp / "mesh").mkdir()
        mesh = generate_mesh(tmp / "mesh", args.agents)
        variants = {"before": code_before(tmp / "before"), "now": ROOT}
        for name, root in variants.items():
            if root is None:
                print(f"{name}: the code before is not in this checkout", file=sys.stderr)
                continue
            up = Up(mesh, server.url, root).wait(120)
            try:
                idle, flooded, answers, mb = asyncio.run(
                    measure(server.url, args.requests, args.calls))
            finally:
                up.stop()
            rows.append([name, f"{idle:.2f}", f"{flooded:.2f}", f"{flooded / idle:.1f}",
                         str(answers), f"{mb:.1f}"])
    print(machine_line())
    print(f"{args.agents} agents, {args.requests} $SRV.STATS requests, victim p50 over "
          f"{args.calls} sequential echo calls")
    print(format_table(["code", "p50 idle ms", "p50 flood ms", "ratio", "answers", "MB"],
                       rows))


if __name__ == "__main__":
    main()

"""The benchmark client: its event loop, readiness probes, and the throughput and latency loops.

One client measures every system the same way: nats-py `request()` on one connection, a
JSON body `{"message": "hello", "n": i}` and an `X-Mesh-Request-Id` header on every request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from _harness import Child, Children, cpu_seconds
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

# The client runs on asyncio's own loop unless MESH_BENCH_CLIENT_LOOP=uvloop: the same
# client for every system, and one that saturates the CPU rather than stalling on flushes
# (a uvloop client left both cores half idle here and made the ratios swing by ±40%).
uvloop: Any = None
if os.environ.get("MESH_BENCH_CLIENT_LOOP") == "uvloop":
    import uvloop

T = TypeVar("T")
HDR_REQUEST_ID = "X-Mesh-Request-Id"
HDR_STATUS = "X-Mesh-Status"
REQUEST_TIMEOUT = 5.0
_ids = itertools.count()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run the client on asyncio's loop (or uvloop when asked for, see above)."""
    if uvloop is not None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    return asyncio.run(main)


def loop_name() -> str:
    if uvloop is not None:
        return f"uvloop {uvloop.__version__}"
    return "asyncio (MESH_BENCH_CLIENT_LOOP=uvloop for a uvloop client)"


def payload(n: int) -> bytes:
    return json.dumps({"message": "hello", "n": n}).encode()


def is_error(msg: Msg) -> bool:
    return bool(msg.headers) and msg.headers.get(HDR_STATUS) == "error"


async def call(nc: NATS, subject: str, n: int, timeout: float = REQUEST_TIMEOUT) -> Msg:
    headers = {HDR_REQUEST_ID: f"bench-{next(_ids)}"}
    return await nc.request(subject, payload(n), timeout=timeout, headers=headers)


async def wait_ready(
    nc: NATS,
    subject: str,
    child: Child | None,
    check: Callable[[Any], bool],
    timeout: float = 20.0,
) -> str | None:
    """Send requests until one is answered well; None when ready, else the reason it is not."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        code = child.exit_code() if child is not None else None
        if code is not None:
            said = child.last_line() if child is not None else ""
            return f"exited with code {code}: {said or '(no output)'}"
        try:
            msg = await call(nc, subject, 0, timeout=0.5)
        except NoRespondersError:
            last = "no responders"
            await asyncio.sleep(0.05)
            continue
        except Exception as exc:  # a timeout, or the connection
            last = f"{type(exc).__name__} {exc}".strip()
            continue
        body = msg.data.decode(errors="replace")
        if is_error(msg):
            last = f"error reply {body[:300]}"
        else:
            try:
                if check(json.loads(msg.data)):
                    return None
                last = f"unexpected reply {body[:300]}"
            except ValueError:
                last = f"reply is not JSON {body[:300]}"
        await asyncio.sleep(0.1)
    return f"not ready within {timeout:.0f} s ({last})"


@dataclass
class Throughput:
    rps: float
    errors: int
    cpu: tuple[float | None, ...]  # fraction of one core: client, then each watched PID


async def throughput(
    nc: NATS,
    subject: str,
    *,
    concurrency: int,
    seconds: float,
    warmup: float,
    watch: Sequence[int | None] = (),
) -> Throughput:
    """`concurrency` workers request back to back; completions in the window after warm-up."""
    counting = False
    stop = False
    done = 0
    errors = 0

    async def worker(start: int) -> None:
        nonlocal done, errors
        n = start
        while not stop:
            n += concurrency
            try:
                failed = is_error(await call(nc, subject, n))
            except Exception:
                failed = True
            if counting:  # only successful replies count as throughput
                done += not failed
                errors += failed

    tasks = [asyncio.create_task(worker(i)) for i in range(concurrency)]
    try:
        await asyncio.sleep(warmup)
        counting = True
        t0, c0 = time.perf_counter(), time.process_time()
        p0 = [cpu_seconds(pid) for pid in watch]
        await asyncio.sleep(seconds)
        snapshot = done
        t1, c1 = time.perf_counter(), time.process_time()
        p1 = [cpu_seconds(pid) for pid in watch]
        stop = True
        await asyncio.gather(*tasks)
    finally:
        stop = True
        for task in tasks:
            task.cancel()
    wall = t1 - t0
    cpu = [(c1 - c0) / wall] + [
        (b - a) / wall if a is not None and b is not None else None
        for a, b in zip(p0, p1, strict=True)
    ]
    return Throughput(rps=snapshot / wall, errors=errors, cpu=tuple(cpu))


@dataclass
class Latency:
    p50_us: float
    p99_us: float
    errors: int
    samples: int


async def latency(nc: NATS, subject: str, *, seconds: float, warmup: float) -> Latency:
    """One request at a time for `seconds` (after `warmup`); percentiles of the round trips."""
    errors = 0
    samples: list[int] = []
    start = time.perf_counter()
    n = 0
    while True:
        now = time.perf_counter()
        if now - start >= warmup + seconds:
            break
        n += 1
        t0 = time.perf_counter_ns()
        try:
            failed = is_error(await call(nc, subject, n))
        except Exception:
            failed = True
        elapsed = time.perf_counter_ns() - t0
        if now - start >= warmup:
            if failed:  # a fast failure is not a latency sample
                errors += 1
            else:
                samples.append(elapsed)
    samples.sort()
    if not samples:
        return Latency(float("nan"), float("nan"), errors, 0)
    return Latency(
        p50_us=percentile(samples, 50) / 1000,
        p99_us=percentile(samples, 99) / 1000,
        errors=errors,
        samples=len(samples),
    )


def percentile(ordered: Sequence[int], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class System:
    """One thing measured: a subject, the child serving it, and its rounds' results."""

    label: str
    subject: str
    child: Child | None = None
    unavailable: str | None = None
    throughputs: list[Throughput] = field(default_factory=list)
    latencies: list[Latency] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.unavailable is None

    def launch(self, children: Children, child: Child | str) -> None:
        """Start its child, or record why it cannot be started."""
        if isinstance(child, str):
            self.unavailable = child
        else:
            self.child = children.start(child)

    async def wait_ready(self, nc: NATS, check: Callable[[Any], bool], timeout: float) -> None:
        if self.ok:
            self.unavailable = await wait_ready(nc, self.subject, self.child, check, timeout)

    def errors(self) -> int:
        return sum(t.errors for t in self.throughputs) + sum(x.errors for x in self.latencies)

    def rps(self) -> float:
        return median([t.rps for t in self.throughputs])

    def p50(self) -> float:
        return median([x.p50_us for x in self.latencies])

    def p99(self) -> float:
        return median([x.p99_us for x in self.latencies])

    def client_cpu(self) -> float:
        return median([t.cpu[0] for t in self.throughputs if t.cpu[0] is not None])

    def cpu_costs(self) -> list[float]:
        """The serving process's CPU per request in each round, in µs."""
        return [t.cpu[1] / t.rps * 1e6 for t in self.throughputs if len(t.cpu) > 1 and t.cpu[1]]

    def cpu_per_request(self) -> float:
        return median(self.cpu_costs())

    def peer_cpu_per_request(self) -> str:
        """The serving process's CPU per request, in µs: its cost, whoever is the bottleneck."""
        costs = self.cpu_costs()
        return f"{median(costs):.1f}" if costs else "?"

    def spread(self) -> list[str]:
        """min / median / max over the rounds: req/s@64, p50@1 and CPU µs per request."""
        figures = ([t.rps for t in self.throughputs], [x.p50_us for x in self.latencies],
                   self.cpu_costs())
        digits = (0, 0, 1)
        return [" / ".join(f"{v:,.{d}f}" for v in (min(f), median(f), max(f))) if f else "?"
                for f, d in zip(figures, digits, strict=True)]

    def cpu(self) -> str:
        """Median CPU use during the throughput windows, in % of one core, per process."""
        if not self.throughputs:
            return "-"
        columns = zip(*(t.cpu for t in self.throughputs), strict=True)
        parts = []
        for column in columns:
            known = [c for c in column if c is not None]
            parts.append(f"{100 * median(known):.0f}" if known else "?")
        return "/".join(parts)

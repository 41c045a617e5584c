"""Per-name request statistics, kept cheap enough to record on every request.

One `record` per answered request: a few integer additions, a ring-buffer write for
percentiles, a shift for the last 20 outcomes and a bisect for the latency histogram.
Everything derived (p50, p99, status, Prometheus buckets) is computed when read.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from runtime.core import protocol as p

RESERVOIR = 512  # the latest durations kept for p50/p99 (a power of two: see _RING_MASK)
_RING_MASK = RESERVOIR - 1
RECENT = 20  # how many of the last answers decide `error`
_RECENT_MASK = (1 << RECENT) - 1
# A name's own failures: what says the agent (not its caller) is broken.
OWN_FAILURES = frozenset({p.HANDLER_ERROR, p.INVALID_OUTPUT, p.TIMEOUT})
# Histogram bounds in seconds (Prometheus' defaults, plus finer steps under 5 ms).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
           5.0, 10.0, 30.0)
_BUCKETS_NS = tuple(int(b * 1e9) for b in BUCKETS)
OK = "ok"
# `last_error` is the code and these words, never the error's own message: that may quote
# a caller's payload (a validation error) or a handler's text, and STATS answer anyone.
RUNTIME_MESSAGES = {
    p.INVALID_INPUT: "the input was refused (not JSON, or not the input schema)",
    p.INVALID_OUTPUT: "the handler's result did not match the output schema",
    p.HANDLER_ERROR: "the handler raised an exception (the instance's log says which)",
    p.TIMEOUT: "no answer within the timeout",
    p.NOT_FOUND: "a name that nobody serves was called",
    p.OVERLOADED: "the agent's line of waiting requests was full",
    p.EXPIRED: "the caller's deadline passed before the request started",
    p.STEP_FAILED: "a step of the pipeline failed",
    p.INVOCATION_MISMATCH: "streaming asked of a non-streaming name, or the reverse",
    p.CANCELLED: "the run was cancelled (mesh-runtime runs cancel)",
    p.OTHER_CODE: "an error passed through from elsewhere, with a code of its own",
}

CODES = sorted({*p.KNOWN_CODES, p.OTHER_CODE})  # every `code` label a name's metrics may have
LAST_ERRORS = {code: f"{code}: {RUNTIME_MESSAGES.get(code, 'failed')}" for code in CODES}


class EndpointStats:
    """Counters of one served name in this process."""

    __slots__ = (
        "_next",
        "_recent",
        "_ring",
        "buckets",
        "codes",
        "errors",
        "last_error",
        "ok",
        "requests",
        "total_ns",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.ok = 0
        self.errors = 0
        self.total_ns = 0
        self.last_error = ""
        self.codes: Counter[str] = Counter()  # error code -> count
        self._ring = [0] * RESERVOIR
        self._next = 0
        self._recent = 0  # bit i set: the answer i answers ago was an own failure
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one is +Inf

    def record(self, duration_ns: int, error: p.MeshError | None) -> None:
        """Count one answered request (`error` None when it succeeded)."""
        self.requests += 1
        self.total_ns += duration_ns
        self._ring[self._next] = duration_ns
        self._next = (self._next + 1) & _RING_MASK
        self.buckets[bisect_left(_BUCKETS_NS, duration_ns)] += 1
        if error is None:
            self.ok += 1
            self._recent = (self._recent << 1) & _RECENT_MASK
            return
        self.errors += 1
        code = p.bounded_code(error.code)
        self.codes[code] += 1
        self.last_error = LAST_ERRORS[code]
        own = code in OWN_FAILURES
        self._recent = ((self._recent << 1) | own) & _RECENT_MASK

    def by_code(self) -> dict[str, int]:
        """Answers by code, `ok` for the successes; every code there is, at 0 if unseen."""
        return {OK: self.ok, **{code: self.codes[code] for code in CODES}}

    @property
    def average_ns(self) -> int:
        return self.total_ns // self.requests if self.requests else 0

    def percentile_ms(self, fraction: float, ordered: list[int] | None = None) -> float:
        if not self.requests:
            return 0.0
        if ordered is None:
            ordered = self.ordered()
        index = min(len(ordered) - 1, int(fraction * len(ordered)))
        return round(ordered[index] / 1e6, 3)

    def ordered(self) -> list[int]:
        """The latest durations, sorted (once for every percentile read together)."""
        return sorted(self._ring[:min(self.requests, RESERVOIR)])

    @property
    def recent_failures(self) -> int:
        """How many of the last 20 answers were the name's own failures."""
        return bin(self._recent).count("1")


@dataclass
class ServerStats:
    """What one `up` process counts beyond its names: reloads by result."""

    reloads: Counter[str] = field(default_factory=Counter)


def endpoint_data(stats: EndpointStats, in_flight: int) -> dict[str, Any]:
    """The `data` of a micro STATS endpoint: what `status` reads beside ADR-32's counters."""
    ordered = stats.ordered()
    return {"in_flight": in_flight, "p50_ms": stats.percentile_ms(0.5, ordered),
            "p99_ms": stats.percentile_ms(0.99, ordered), "last_answers": min(stats.requests, RECENT),
            "last_failures": stats.recent_failures}

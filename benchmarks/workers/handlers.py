"""The CPU-bound handler of benchmarks/workers.py: about 200 µs of pure Python per request.

MESH_BENCH_SPIN sets the loop's length; the benchmark measures it on this machine first.
"""

from __future__ import annotations

import os
from typing import Any

SPIN = int(os.environ.get("MESH_BENCH_SPIN", "4000"))


def spin(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def burn(payload: dict[str, Any]) -> dict[str, Any]:
    """A sync handler (run in the thread pool, as a blocking handler should be)."""
    return {"n": payload.get("n"), "total": spin(SPIN)}

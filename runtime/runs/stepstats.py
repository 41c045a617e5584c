"""Step durations per pipeline, step and code, for `mesh_step_duration_seconds`.

A for_each item counts under its step (`per_section`, not `per_section[3]`), so the number of
series stays that of the steps written in mesh.yaml.
"""

from __future__ import annotations

from bisect import bisect_left

from runtime.core import protocol as p

# Histogram bounds in seconds (those of mesh_request_duration_seconds).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
           5.0, 10.0, 30.0)
MAX_SERIES = 10_000  # a bound, should step paths ever be unbounded


class StepHistogram:
    """Counts per bucket (the last is +Inf) and the sum of one series."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0


class StepStats:
    """Every step's histogram in one process, keyed (pipeline, step, code)."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str, str], StepHistogram] = {}

    def observe(self, pipeline: str, path: str, code: str, seconds: float) -> None:
        if path[-1:] == "]":  # a for_each item: its step
            path = path[:path.rfind("[")]
        key = (pipeline, path, code if code == "ok" else p.bounded_code(code))
        series = self.series.get(key)
        if series is None:
            if len(self.series) >= MAX_SERIES:
                return
            series = self.series[key] = StepHistogram()
        series.counts[bisect_left(BUCKETS, seconds)] += 1
        series.total += seconds

    def snapshot(self) -> list[tuple[tuple[str, str, str], list[int], float]]:
        """(key, counts, sum) of every series, copied (read from another thread)."""
        for _ in range(5):
            try:
                items = list(self.series.items())
                break
            except RuntimeError:  # changed size while copied
                continue
        else:
            return []
        return [(key, list(h.counts), h.total) for key, h in items]

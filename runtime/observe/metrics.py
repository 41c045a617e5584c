"""`up --metrics-port PORT`: Prometheus text on /metrics, read from the request stats.

Nothing is counted twice: a collector reads the same per-name counters that the micro
STATS answers come from, at scrape time, so the request path pays nothing for metrics.
The HTTP server is prometheus-client's own, in a thread, bound to 127.0.0.1 by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from runtime.runs.stepstats import BUCKETS as STEP_BUCKETS
from runtime.serve.server import MeshServer
from runtime.serve.stats import BUCKETS


class MetricsPortError(RuntimeError):
    """The metrics port could not be bound."""


class MeshCollector(Collector):
    """The mesh_* metrics of one `up` process."""

    def __init__(self, server: MeshServer):
        self.server = server

    def collect(self) -> Iterator[Metric]:
        services = _snapshot(self.server.services)  # the event loop may change it meanwhile
        requests = CounterMetricFamily("mesh_requests", "Requests answered, by name and code",
                                       labels=["name", "code"])
        durations = HistogramMetricFamily(
            "mesh_request_duration_seconds", "Time from arrival to answer", labels=["name"])
        in_flight = GaugeMetricFamily("mesh_in_flight", "Requests being answered now",
                                      labels=["name"])
        for name, service in services:
            stats = service.stats
            for code, count in sorted(stats.by_code().items()):
                requests.add_metric([name, code], count)
            cumulative, buckets = 0, []
            for bound, count in zip((*BUCKETS, float("inf")), stats.buckets, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            durations.add_metric([name], buckets, stats.total_ns / 1e9)
            in_flight.add_metric([name], service.in_flight)
        reloads = CounterMetricFamily("mesh_reloads", "Reloads of the mesh file, by result",
                                      labels=["result"])
        for result, count in sorted(self.server.stats.reloads.items()):
            reloads.add_metric([result], count)
        generation = GaugeMetricFamily("mesh_generation", "The generation being served")
        generation.add_metric([], self.server.generation)
        yield from (requests, durations, in_flight, reloads, generation, *_run_metrics(self.server))


def _run_metrics(server: MeshServer) -> Iterator[Metric]:
    """Pipeline steps' durations, and the run events the journal lost."""
    steps = HistogramMetricFamily(
        "mesh_step_duration_seconds", "Time of one attempt of a pipeline step, by its result",
        labels=["pipeline", "step", "code"])
    for (pipeline, step, code), counts, total in server.runs.stats.snapshot():
        cumulative, buckets = 0, []
        for bound, count in zip((*STEP_BUCKETS, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        steps.add_metric([pipeline, step, code], buckets, total)
    dropped = CounterMetricFamily("mesh_run_events_dropped",
                                  "Run events the journal could not store")
    dropped.add_metric([], server.runs.dropped)
    yield from (steps, dropped)


def _snapshot(services: dict[str, Any]) -> list[tuple[str, Any]]:
    for _ in range(5):
        try:
            return list(services.items())
        except RuntimeError:  # changed size while copied: copy again
            continue
    return []


def serve_metrics(server: MeshServer, host: str, port: int, *more: Collector) -> Any:
    """Serve /metrics on host:port in a thread; the WSGI server (call `shutdown` to stop)."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(MeshCollector(server))
    for collector in more:
        registry.register(collector)
    try:
        http, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise MetricsPortError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    return http

"""`up --metrics-port` with workers: one /metrics, the sum of what every worker counts.

Each worker serves its own metrics on a loopback port the kernel picks; the supervisor
serves the port the user asked for and, at each scrape, reads every serving worker's
and adds them up. Requests, durations and in-flight counts add; the generation and
the reloads of the mesh file (which every worker applies alike) take the highest.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from runtime.supervise.startup import StartupError

SAME_IN_EVERY_WORKER = {"mesh_generation", "mesh_reloads"}
SCRAPE_SECONDS = 2.0


class SummedMetrics(Collector):
    """Every serving worker's metrics, read at scrape time and added up."""

    def __init__(self, ports: Callable[[], list[int]]):
        self.ports = ports

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        values: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}
        for port in self.ports():
            try:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=SCRAPE_SECONDS) as response:
                    text = response.read().decode()
            except OSError:  # a worker stopping meanwhile: the others still count
                continue
            for family in text_string_to_metric_families(text):
                families.setdefault(family.name, Metric(family.name, family.documentation,
                                                        family.type))
                for sample in family.samples:
                    key = (family.name, sample.name, tuple(sorted(sample.labels.items())))
                    before = values.get(key)
                    if before is None:
                        values[key] = sample.value
                    elif family.name in SAME_IN_EVERY_WORKER:
                        values[key] = max(before, sample.value)
                    else:
                        values[key] = before + sample.value
        for (family_name, name, labels), value in values.items():
            families[family_name].add_sample(name, dict(labels), value)
        yield from families.values()


def serve_summed_metrics(ports: Callable[[], list[int]], host: str, port: int) -> Any:
    """Serve the sum on host:port in a thread; the WSGI server (call `shutdown` to stop)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SummedMetrics(ports))
    try:
        http, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise StartupError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    return http

"""`up --metrics-port` with workers: one /metrics, the sum of what every worker counts.

Each worker serves its own metrics on a loopback port the kernel picks; the supervisor
serves the port the user asked for and, at each scrape, reads every serving worker's
and adds them up. Requests, durations and in-flight counts add; the generation and
the reloads of the mesh file (which every worker applies alike) take the highest.

Summed counters never go down while `up` runs, or every `rate()` panel would show
phantom traffic: a worker's last totals are kept when it is replaced or killed (and
when one scrape of it fails), and a counter that restarts inside a worker (a name
removed and added back) adds to what it had.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Iterator

from prometheus_client import start_http_server
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from runtime.supervise.startup import StartupError

SAME_IN_EVERY_WORKER = {"mesh_generation", "mesh_reloads"}
SCRAPE_SECONDS = 2.0
Series = tuple[str, str, tuple[tuple[str, str], ...]]  # (family, sample name, labels)


class _Worker:
    """What one worker's counters said: per series, what earlier restarts had + the last."""

    def __init__(self) -> None:
        self.counters: dict[Series, tuple[float, float]] = {}  # series -> (base, last)
        self.gauges: dict[Series, float] = {}  # from the last scrape that answered

    def saw(self, series: Series, value: float) -> None:
        base, last = self.counters.get(series, (0.0, 0.0))
        if value < last:  # restarted inside the worker: what it had still counts
            base += last
        self.counters[series] = (base, value)

    def totals(self) -> dict[Series, float]:
        return {series: base + last for series, (base, last) in self.counters.items()}


class SummedMetrics(Collector):
    """Every serving worker's metrics, read at scrape time and added up."""

    def __init__(self, ports: Callable[[], list[int]]):
        self.ports = ports
        self._families: dict[str, Metric] = {}  # name -> an empty family (its type, help)
        self._workers: dict[int, _Worker] = {}  # by metrics port: one per worker process
        self._retired: dict[Series, float] = {}  # what workers gone had counted
        self._lock = threading.Lock()  # two scrapes at once must not count twice

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            values = self._scrape()
        families = {name: Metric(f.name, f.documentation, f.type)
                    for name, f in self._families.items()}
        for (family_name, name, labels), value in sorted(values.items()):
            families[family_name].add_sample(name, dict(labels), value)
        yield from families.values()

    def _scrape(self) -> dict[Series, float]:
        ports = self.ports()
        for port in ports:
            worker = self._workers.setdefault(port, _Worker())
            text = _read(port)
            if text is None:  # stopping, killed, or slow: its last totals stand
                worker.gauges.clear()
                continue
            worker.gauges = {}
            for family in text_string_to_metric_families(text):
                self._families.setdefault(family.name, Metric(
                    family.name, family.documentation, family.type))
                for sample in family.samples:
                    series = (family.name, sample.name, tuple(sorted(sample.labels.items())))
                    if family.type == "gauge":
                        worker.gauges[series] = sample.value
                    else:
                        worker.saw(series, sample.value)
        for port in set(self._workers) - set(ports):  # replaced or dead: keep what it counted
            for series, total in self._workers.pop(port).totals().items():
                self._add(self._retired, series, total)
        values = dict(self._retired)
        for worker in self._workers.values():
            for series, total in (*worker.totals().items(), *worker.gauges.items()):
                self._add(values, series, total)
        return values

    @staticmethod
    def _add(values: dict[Series, float], series: Series, value: float) -> None:
        before = values.get(series)
        if before is None:
            values[series] = value
        elif series[0] in SAME_IN_EVERY_WORKER:
            values[series] = max(before, value)
        else:
            values[series] = before + value


def _read(port: int) -> str | None:
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=SCRAPE_SECONDS) as response:
            return str(response.read().decode())
    except (OSError, ValueError):
        return None


def serve_summed_metrics(ports: Callable[[], list[int]], host: str, port: int) -> object:
    """Serve the sum on host:port in a thread; the WSGI server (call `shutdown` to stop)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SummedMetrics(ports))
    try:
        http, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise StartupError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    return http

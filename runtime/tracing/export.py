"""Exporting spans over OTLP/HTTP through the OpenTelemetry SDK (the `otel` extra).

Each process (`up`, each of its workers) sets up a tracer provider of its own. Spans
leave through a BatchSpanProcessor on its own thread: a collector that is down or slow
never holds up a request. What cannot be queued or sent is dropped and counted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)

from runtime.tracing.settings import Resolved
from runtime.tracing.spans import REQUEST_ID, Recorder

log = logging.getLogger("mesh-runtime")
MAX_QUEUE = 2048  # spans waiting for the exporter; past this they are dropped
SHUTDOWN_SECONDS = 2.0  # what `up`'s exit gives the last spans to leave


class Counted(SpanExporter):
    """The OTLP exporter, counting the spans of each batch it could not send."""

    def __init__(self, exporter: SpanExporter, where: str):
        self.exporter = exporter
        self.where = where
        self.handed = 0  # spans given to the exporter (written by the export thread only)
        self.failed = 0
        self._warned = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.exporter.export(spans)
        except Exception:  # the exporter's own bug must not end the export thread
            result = SpanExportResult.FAILURE
        self.handed += len(spans)
        if result is not SpanExportResult.SUCCESS:
            self.failed += len(spans)
            if not self._warned:
                self._warned = True
                log.warning("tracing: the collector at %s took no spans; spans are dropped "
                            "and counted until it does (requests are not affected)", self.where)
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class Gate(SpanProcessor):
    """A BatchSpanProcessor behind a bound: a span that finds MAX_QUEUE waiting is dropped
    here (and counted), never logged one by one."""

    def __init__(self, exporter: Counted):
        self.exporter = exporter
        self.batch = BatchSpanProcessor(exporter, max_queue_size=MAX_QUEUE * 2)
        self.accepted = 0  # written by the event loop's thread only
        self.dropped = 0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self.accepted - self.exporter.handed >= MAX_QUEUE:
            self.dropped += 1
            return
        self.accepted += 1
        self.batch.on_end(span)

    def shutdown(self) -> None:
        self.batch.shutdown()  # bounded by Exporting.close

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.batch.force_flush(timeout_millis)


class MeshSampler(Sampler):
    """Requests are sampled by the mesh before their span starts (see spans.Recorder);
    any other root span (a handler's own) by trace id ratio."""

    def __init__(self, ratio: float):
        self.ratio = TraceIdRatioBased(ratio)

    def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: Any = None,
                      attributes: Any = None, links: Any = None,
                      trace_state: Any = None) -> SamplingResult:
        if attributes and REQUEST_ID in attributes:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return self.ratio.should_sample(parent_context, trace_id, name, kind, attributes, links,
                                        trace_state)

    def get_description(self) -> str:
        return f"MeshSampler{{{self.ratio.get_description()}}}"


class Exporting:
    """This process's provider, its recorder and its counts."""

    def __init__(self, settings: Resolved, service: str, instance: str):
        exporter = OTLPSpanExporter(endpoint=settings.traces_url, timeout=settings.timeout)
        self.counted = Counted(exporter, settings.shown_endpoint)
        self.gate = Gate(self.counted)
        resource = Resource.create({"service.name": settings.service_name or service,
                                    "service.instance.id": instance})
        self.provider = TracerProvider(  # closed by `up`, bounded: not at exit, unbounded
            resource=resource, sampler=ParentBased(MeshSampler(settings.sample)),
            shutdown_on_exit=False)
        self.provider.add_span_processor(self.gate)
        self.recorder = Recorder(self.provider.get_tracer("mesh-runtime"), settings.sample)
        _quiet_sdk_logs()

    def dropped(self) -> int:
        """Spans lost so far: dropped at the queue, or in batches the collector did not take."""
        return self.gate.dropped + self.counted.failed

    def close(self) -> None:
        """Send what is queued, waiting at most SHUTDOWN_SECONDS (a dead collector costs
        `up`'s exit no more than that)."""
        done = threading.Thread(target=self.provider.shutdown, daemon=True)
        done.start()
        done.join(SHUTDOWN_SECONDS + 0.5)


def install_global(provider: TracerProvider) -> None:
    """Handlers' own OpenTelemetry spans go where the mesh's go, unless the process has a
    provider already (set once per process: OpenTelemetry's rule)."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)


def _quiet_sdk_logs() -> None:
    # The SDK logs each span it cannot queue and each failed export (with a traceback):
    # a collector that is down would flood `up`'s log. We count and say it once instead.
    for name in ("opentelemetry.sdk._shared_internal", "opentelemetry.sdk.trace.export",
                 "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                 "opentelemetry.exporter.otlp.proto.http"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

"""Exporting spans over OTLP/HTTP through the OpenTelemetry SDK (the `otel` extra).

Each process (`up`, each of its workers) sets up a tracer provider of its own. Spans
leave through the SDK's BatchSpanProcessor on its own thread, behind a bound: a collector
that is down or slow never holds up a request; what cannot be queued or sent is dropped
and counted. The mesh's own spans are encoded by `encode` (a fifth of the SDK encoder's
CPU); a handler's own spans by the SDK's encoder.
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
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from runtime.tracing.encode import encode
from runtime.tracing.settings import Resolved
from runtime.tracing.spans import Recorder

log = logging.getLogger("mesh-runtime")
MAX_QUEUE = 2048  # spans waiting for the exporter; past this they are dropped
SHUTDOWN_SECONDS = 2.0  # what `up`'s exit gives the last spans to leave


class Exporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter (its HTTP client, retries and settings) with the mesh's
    encoder; counts the spans of each batch it could not send."""

    def __init__(self, where: str, **options: Any):
        super().__init__(**options)
        self.where = where
        self.handed = 0  # spans given to the exporter (written by the export thread only)
        self.failed = 0
        self._warned = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._send(spans)
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

    def _send(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        client = getattr(self, "_client", None)  # the SDK's HTTP client (1.40+)
        if client is None or getattr(self, "_shutdown", False):
            return super().export(spans)  # another SDK version: its own way, slower
        sent = client.export(encode(spans))
        return SpanExportResult.SUCCESS if sent.success else SpanExportResult.FAILURE


class Gate(SpanProcessor):
    """A BatchSpanProcessor behind a bound: a span that finds MAX_QUEUE waiting is dropped
    here (and counted), never logged one by one."""

    def __init__(self, exporter: Exporter):
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


class Exporting:
    """This process's provider (for handlers' own spans too), its recorder and its counts."""

    def __init__(self, settings: Resolved, service: str, instance: str):
        self.exporter = Exporter(settings.shown_endpoint, endpoint=settings.traces_url)
        self.gate = Gate(self.exporter)
        resource = Resource.create({"service.name": settings.service_name or service,
                                    "service.instance.id": instance})
        self.provider = TracerProvider(  # closed by `up`, bounded: not at exit, unbounded
            resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.sample)),
            shutdown_on_exit=False)
        self.provider.add_span_processor(self.gate)
        self.recorder = Recorder(self.gate, resource, settings.sample)
        _quiet_sdk_logs()

    def dropped(self) -> int:
        """Spans lost so far: dropped at the queue, or in batches the collector did not take."""
        return self.gate.dropped + self.exporter.failed

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
                 "opentelemetry.exporter.otlp.proto.http",
                 "opentelemetry.exporter.otlp.common"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

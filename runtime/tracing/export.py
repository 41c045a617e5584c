"""Exporting spans over OTLP/HTTP through the OpenTelemetry SDK (the `otel` extra).

Each process (`up`, each of its workers) sets up its own. The mesh's spans go through
runtime/tracing/batches.py and the SDK exporter's HTTP client (its retries, headers,
TLS and OTEL_EXPORTER_OTLP_* settings); a handler's own spans through a tracer provider
with the SDK's BatchSpanProcessor and exporter, installed as the process's global one.
Neither ever holds up a request: what cannot be queued or sent is dropped and counted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from runtime.tracing.batches import Batches
from runtime.tracing.encode import encode, resource_block
from runtime.tracing.settings import Resolved
from runtime.tracing.spans import Record, Recorder, readable

log = logging.getLogger("mesh-runtime")
SHUTDOWN_SECONDS = 2.0  # what `up`'s exit gives the last spans to leave


class Counted(SpanExporter):
    """The SDK's exporter for a handler's own spans, counting what it could not send."""

    def __init__(self, exporter: SpanExporter, batches: Batches):
        self.exporter = exporter
        self.batches = batches
        self.failed = 0  # written by the SDK's export thread only

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.exporter.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self.failed += len(spans)
            self.batches.warn()
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()


class Exporting:
    """This process's exporters, provider and recorder, and what they lost."""

    def __init__(self, settings: Resolved, service: str, instance: str):
        self.resource = Resource.create({"service.name": settings.service_name or service,
                                         "service.instance.id": instance})
        self._resource_block = resource_block(self.resource.attributes)
        self.exporter = OTLPSpanExporter(endpoint=settings.traces_url)
        self.batches = Batches(self._send, settings.shown_endpoint)
        self.recorder = Recorder(self.batches, settings.sample)
        self.counted = Counted(OTLPSpanExporter(endpoint=settings.traces_url), self.batches)
        self.provider = Provider(  # closed by `up`, bounded: not at exit, unbounded
            self.recorder, resource=self.resource,
            sampler=ParentBased(TraceIdRatioBased(settings.sample)), shutdown_on_exit=False)
        self.provider.add_span_processor(BatchSpanProcessor(self.counted))
        _quiet_sdk_logs()

    def _send(self, records: list[Record]) -> bool:
        client: Any = getattr(self.exporter, "_client", None)  # the SDK's HTTP client (1.40+)
        if client is None:  # another SDK version: through its exporter, the slower way
            spans = [readable(r, self.resource) for r in records]
            return self.exporter.export(spans) is SpanExportResult.SUCCESS
        return bool(client.export(encode(records, self._resource_block)).success)

    def dropped(self) -> int:
        """Spans lost so far: the queue was full, or the collector did not take them."""
        return self.batches.dropped + self.batches.failed + self.counted.failed

    def close(self) -> None:
        """Send what is queued, waiting at most SHUTDOWN_SECONDS (a dead collector costs
        `up`'s exit no more than that)."""
        self.batches.close(SHUTDOWN_SECONDS)
        self.exporter.shutdown()  # ends its retries, if a send is still waiting
        done = threading.Thread(target=self.provider.shutdown, daemon=True)
        done.start()
        done.join(0.5)


class Provider(TracerProvider):
    """The SDK's provider, telling the recorder once a handler asks it for a tracer."""

    def __init__(self, recorder: Recorder, **options: Any):
        super().__init__(**options)
        self.recorder = recorder

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        self.recorder.handlers_trace = True  # from now on, requests attach their context
        return super().get_tracer(*args, **kwargs)


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

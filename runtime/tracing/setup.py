"""Turning span export on for this process, once it knows its mesh (`up`, each worker).

OpenTelemetry is imported here only when a collector is configured; without one, or
without the `otel` extra, trace context still flows on every hop and no span is made.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from runtime.tracing.settings import TracingSettings, resolve

if TYPE_CHECKING:
    from runtime.tracing.export import Exporting
    from runtime.tracing.spans import Recorder

log = logging.getLogger("mesh-runtime")
INSTALL_HINT = 'pip install "mesh-runtime[otel]"'

_exporting: Exporting | None = None


def recorder() -> Recorder | None:
    """The span maker of this process, when it exports spans."""
    return _exporting.recorder if _exporting is not None else None


def start(spec: TracingSettings | None, service: str, instance: str, *, announce: bool = True,
          environ: Mapping[str, str] = os.environ) -> bool:
    """Export spans if a collector is configured; whether this process now does. What it
    does (or why it cannot) is logged at info, or debug when `announce` is off (the
    workers after the first say nothing twice)."""
    global _exporting
    level = logging.INFO if announce else logging.DEBUG
    resolved = resolve(spec, environ)
    if resolved is None:
        return False
    for problem in resolved.problems:
        log.log(logging.WARNING if announce else logging.DEBUG, "tracing: %s", problem)
    # Handlers (or what they use) that imported OpenTelemetry themselves make spans of
    # their own: each request's context is then attached for theirs to nest under.
    handlers_trace = "opentelemetry.trace" in sys.modules
    try:
        from runtime.tracing.export import Exporting, install_global
    except ImportError as exc:
        log.log(logging.WARNING if announce else logging.DEBUG,
                "tracing is configured (%s) but the OpenTelemetry SDK is not installed (%s): "
                "%s to export spans; trace context still flows on every hop", resolved.source,
                exc.name or exc, INSTALL_HINT)
        return False
    if _exporting is not None:
        _exporting.close()
    _exporting = Exporting(resolved, service, instance)
    _exporting.recorder.handlers_trace = handlers_trace
    install_global(_exporting.provider)
    log.log(level, "tracing: spans to %s (sample %g, from %s)", resolved.shown_endpoint,
            resolved.sample, resolved.source)
    return True


def dropped() -> int:
    """Spans this process could not export (queue full, or the collector did not take them)."""
    return _exporting.dropped() if _exporting is not None else 0


def stop() -> None:
    """Send the spans still queued (bounded: a dead collector costs at most 2 s)."""
    global _exporting
    if _exporting is None:
        return
    exporting, _exporting = _exporting, None
    exporting.close()
    lost = exporting.dropped()
    if lost:
        log.warning("tracing: %d spans dropped (the collector did not take them in time)", lost)

"""`tracing:` in mesh.yaml, and the standard OpenTelemetry variables that override it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

TRACES_PATH = "/v1/traces"


class TracingSettings(BaseModel):
    """Where this mesh's spans go: an OTLP/HTTP collector (needs `mesh-runtime[otel]`).
    Trace context flows on every hop with or without it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str | None = Field(
        None, description="the collector's OTLP/HTTP base URL, like http://collector:4318 "
        "(spans go to <endpoint>/v1/traces); OTEL_EXPORTER_OTLP_ENDPOINT overrides it")
    sample: float = Field(
        1.0, ge=0.0, le=1.0, description="share of new traces recorded (1.0: all); a caller's "
        "sampled traceparent is always followed; OTEL_TRACES_SAMPLER_ARG overrides it")
    service_name: str | None = Field(
        None, description="service.name of the spans; default: the mesh's name "
        "(OTEL_SERVICE_NAME overrides it)")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and (problem := endpoint_problem(value)):
            raise ValueError(problem)
        return value


def endpoint_problem(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises on a port out of range)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return f"not an http(s) URL: {value[:80]!r} (like http://collector:4318)"
    return None


@dataclass(frozen=True)
class Resolved:
    """Tracing as this process runs it: file settings with the environment's on top."""

    traces_url: str | None  # None: let the exporter read OTEL_EXPORTER_OTLP_* itself
    shown_endpoint: str
    sample: float
    service_name: str | None
    source: str  # what configured it, for messages
    timeout: float | None = None
    problems: tuple[str, ...] = ()  # ignored environment values, said once


def resolve(spec: TracingSettings | None,
            environ: Mapping[str, str] = os.environ) -> Resolved | None:
    """None when no collector is configured (or OTEL_SDK_DISABLED=true)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    spec = spec or TracingSettings()
    problems: list[str] = []
    traces_url, source = None, ""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        value = environ.get(name, "").strip()
        if value and (problem := endpoint_problem(value)):
            problems.append(f"{name} ignored: {problem}")
        elif value:
            full = name.endswith("TRACES_ENDPOINT")
            traces_url = value if full else value.rstrip("/") + TRACES_PATH
            source = name
            break
    if traces_url is None and spec.endpoint:
        traces_url, source = traces_url_of(spec.endpoint), "tracing.endpoint in mesh.yaml"
    if traces_url is None:
        return None
    sample = spec.sample
    arg = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if arg:
        try:
            ratio = float(arg)
            if not 0.0 <= ratio <= 1.0:
                raise ValueError
            sample = ratio
        except ValueError:
            problems.append(f"OTEL_TRACES_SAMPLER_ARG ignored: {arg[:40]!r} is not a number "
                            "from 0 to 1")
    service = environ.get("OTEL_SERVICE_NAME", "").strip() or spec.service_name
    return Resolved(traces_url, _shown(traces_url), sample, service, source,
                    problems=tuple(problems))


def traces_url_of(endpoint: str) -> str:
    """A base URL gets /v1/traces, as OTEL_EXPORTER_OTLP_ENDPOINT does; a full one is kept."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def _shown(url: str) -> str:
    """The URL without user:password, for log lines."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"

"""The wire protocol shared with OpenAgentMesh 0.2: subjects, headers, error bodies."""

from __future__ import annotations

import json
from typing import Any

from runtime.core import caps
from runtime.core.text import cut

AGENT_SUBJECT_PREFIX = "mesh.agent."
ERROR_SUBJECT_PREFIX = "mesh.errors."
STREAM_SUBJECT_PREFIX = "mesh.stream."
CAPABILITY_SUBJECT_PREFIX = "mesh.capability."   # queue group q.capability.<c>: one answers
BROADCAST_SUBJECT_PREFIX = "mesh.broadcast."     # no queue group: every agent answers

HDR_REQUEST_ID = "X-Mesh-Request-Id"
HDR_STATUS = "X-Mesh-Status"
HDR_SOURCE = "X-Mesh-Source"
HDR_STREAM = "X-Mesh-Stream"
HDR_STREAM_SEQ = "X-Mesh-Stream-Seq"
HDR_STREAM_END = "X-Mesh-Stream-End"
HDR_TIMEOUT = "X-Mesh-Timeout"          # the caller's remaining budget in seconds when it sent
HDR_INSTANCE_ID = "X-Mesh-Instance-Id"  # which `up` process answered (broadcast answers)
HDR_ASYNC = "X-Mesh-Async"              # "true": a pipeline answers its run id at once
HDR_IDEMPOTENCY_KEY = "X-Mesh-Idempotency-Key"  # <run id>/<step path>: the same on every try
HDR_RUN_KEY = "X-Mesh-Run-Key"  # at most one run of a durable pipeline per key
HDR_SERVICE_ERROR = "Nats-Service-Error"            # NATS micro (ADR-32) error headers
HDR_SERVICE_ERROR_CODE = "Nats-Service-Error-Code"

CATALOG_BUCKET = "mesh-catalog"
CATALOG_KEY = "catalog"
REGISTRY_BUCKET = "mesh-registry"
CONTEXT_BUCKET = "mesh-context"
ARTIFACTS_BUCKET = "mesh-artifacts"
INSTANCES_BUCKET = "mesh-instances"     # one record per live `up` process, key = instance id
LEASES_BUCKET = "mesh-run-leases"       # which instance owns a durable run, key = run id
DEFINITIONS_BUCKET = "mesh-pipelines"   # pipeline definitions runs started on, key = hash
RUN_KEYS_BUCKET = "mesh-run-keys"       # run key (hashed) -> the run it started

DEFAULT_CLIENT_URL = "nats://127.0.0.1:4222"

# Error codes (DESIGN section 3).
INVALID_INPUT = "invalid_input"
INVALID_OUTPUT = "invalid_output"
HANDLER_ERROR = "handler_error"
TIMEOUT = "timeout"
NOT_FOUND = "not_found"
OVERLOADED = "overloaded"
EXPIRED = "expired"
STEP_FAILED = "step_failed"
INVOCATION_MISMATCH = "invocation_mismatch"
CANCELLED = "cancelled"  # `mesh-runtime runs cancel` ended the run

# Every code a mesh-runtime process answers with; anything else came from elsewhere.
KNOWN_CODES = frozenset({INVALID_INPUT, INVALID_OUTPUT, HANDLER_ERROR, TIMEOUT, NOT_FOUND,
                         OVERLOADED, EXPIRED, STEP_FAILED, INVOCATION_MISMATCH,
                         CANCELLED})
OTHER_CODE = "other"  # the one label metrics and stats count every unknown code under


def bounded_code(code: str) -> str:
    """`code` if it is one of ours, else `other`: a label from a bounded set, so that codes
    passed through from other agents cannot grow the metric series (the body keeps them)."""
    return code if code in KNOWN_CODES else OTHER_CODE


def agent_subject(name: str) -> str:
    return AGENT_SUBJECT_PREFIX + name


def queue_group(name: str) -> str:
    return "q." + name


def error_subject(name: str) -> str:
    return ERROR_SUBJECT_PREFIX + name


def stream_subject(request_id: str) -> str:
    return STREAM_SUBJECT_PREFIX + request_id


def capability_subject(capability: str) -> str:
    return CAPABILITY_SUBJECT_PREFIX + capability


def capability_queue_group(capability: str) -> str:
    return "q.capability." + capability


def broadcast_subject(capability: str) -> str:
    return BROADCAST_SUBJECT_PREFIX + capability


class MeshError(Exception):
    """A structured mesh error: what an agent answers, and what a caller raises."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        agent: str = "",
        request_id: str = "",
        details: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.agent = agent
        self.request_id = request_id
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "agent": self.agent,
            "request_id": self.request_id,
            "details": self.details,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict()).encode()

    @classmethod
    def from_body(cls, body: bytes, *, agent: str = "", request_id: str = "") -> MeshError:
        """Rebuild an error from a reply body, tolerating peers that send less, and cutting
        every field to a bounded size (anyone on the bus may answer)."""
        try:
            data = json.loads(body) if body else {}
        except (ValueError, RecursionError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        return cls(
            caps.capped_code(str(data.get("code", "unknown"))),
            cut(str(data.get("message", body[:200].decode(errors="replace"))),
                caps.MESSAGE_LIMIT),
            agent=cut(str(data.get("agent") or agent), caps.AGENT_LIMIT),
            request_id=str(data.get("request_id") or request_id)[:caps.ID_LIMIT],
            details=caps.capped_details(data.get("details")),
        )

    def __repr__(self) -> str:
        return f"MeshError({self.code!r}, {self.message!r})"

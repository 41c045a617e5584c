"""The run journal's events: one JSON object per message on `mesh.run.<run id>.<event>`.

Every event has `run`, `pipeline`, `event`, `at` (unix seconds), `step` (the step path, or
null), `attempt` (or null) and `trace_id` (32 hex digits, or null); some add `input`,
`output` or `error` {code, message}. A value whose JSON is over 64 KB is stored cut: the
start of its JSON text as a string, and the event says `"truncated": true`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

RUN_STARTED = "run_started"
STEP_STARTED = "step_started"
STEP_FINISHED = "step_finished"
STEP_FAILED = "step_failed"
STEP_SKIPPED = "step_skipped"
STEP_PROGRESS = "step_progress"
STEP_WAITING = "step_waiting"  # a durable run's wait or sleep step parks it, `until` a time
RUN_FINISHED = "run_finished"
RUN_FAILED = "run_failed"
RUN_CANCELLED = "run_cancelled"
RUN_RESUMED = "run_resumed"  # `runs resume` of a failed or cancelled durable run

STEP_EVENTS = frozenset({STEP_STARTED, STEP_FINISHED, STEP_FAILED, STEP_SKIPPED, STEP_PROGRESS,
                         STEP_WAITING})
RUN_ENDS = frozenset({RUN_FINISHED, RUN_FAILED, RUN_CANCELLED})
EVENTS = frozenset({RUN_STARTED, RUN_RESUMED, *STEP_EVENTS, *RUN_ENDS})

STREAM = "MESH_RUNS"
SUBJECT_PREFIX = "mesh.run."
SUBJECTS = SUBJECT_PREFIX + ">"
MAX_VALUE = 64 * 1024  # bytes of JSON a value may take in an event before it is cut
MAX_MESSAGE = 2048  # characters of an error message kept

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def subject(run_id: str, event: str) -> str:
    """Where an event of a run is published (run ids are checked request ids: one token)."""
    return f"{SUBJECT_PREFIX}{run_id}.{event}"


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), or None."""
    if not traceparent or len(traceparent) < 55:
        return None
    trace_id = traceparent[3:35]
    if not _TRACE_ID.match(trace_id) or trace_id == "0" * 32:
        return None
    return trace_id


def value_json(value: Any) -> tuple[bytes, bool]:
    """`value` as JSON for an event, and whether it was cut to MAX_VALUE."""
    try:
        data = orjson.dumps(value)
    except TypeError:  # what orjson refuses (integers past 64 bits): the standard library's
        data = json.dumps(value, default=str, ensure_ascii=False).encode()
    if len(data) <= MAX_VALUE:
        return data, False
    text = data[:MAX_VALUE].decode("utf-8", errors="ignore")  # never half a character
    return orjson.dumps(text), True


def error_value(code: object, message: object) -> dict[str, str]:
    """An event's `error`: the code, and the message (its first MAX_MESSAGE characters).
    Text either way: a handler may raise MeshError with anything in them."""
    return {"code": str(code)[:200], "message": str(message)[:MAX_MESSAGE]}


def encode(fixed: dict[str, Any], event: str, at: float, step: str | None,
           attempt: int | None, values: dict[str, Any] | None = None) -> bytes:
    """One event's JSON. `fixed` is the run's own fields (`run_fields`); `values` (input,
    output, error, progress...) are checked against MAX_VALUE one by one."""
    body = {**fixed, "event": event, "at": at, "step": step, "attempt": attempt}
    if values:
        truncated = False
        for key, value in values.items():
            data, cut = value_json(value)
            truncated = truncated or cut
            body[key] = orjson.Fragment(data)
        if truncated:
            body["truncated"] = True
    return orjson.dumps(body)


def run_fields(run_id: str, pipeline: str, trace_id: str | None) -> dict[str, Any]:
    """The fields every event of one run has: run, pipeline, trace_id."""
    return {"run": run_id, "pipeline": pipeline, "trace_id": trace_id}


def decode(data: bytes) -> dict[str, Any] | None:
    """An event read back from the journal, or None when it is not one (another client may
    publish anything on `mesh.run.>`)."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    if not isinstance(event.get("run"), str) or event.get("event") not in EVENTS:
        return None
    at = event.get("at")
    if isinstance(at, bool) or not isinstance(at, int | float):
        return None
    for key in ("pipeline", "step", "trace_id"):
        if event.get(key) is not None and not isinstance(event[key], str):
            return None
    attempt = event.get("attempt")
    if attempt is not None and (isinstance(attempt, bool) or not isinstance(attempt, int)):
        return None
    error = event.get("error")
    if error is not None and not (isinstance(error, dict)
                                  and isinstance(error.get("code"), str)):
        return None
    return event


CANCEL_PREFIX = "mesh.runs.cancel."  # + run id: each `up` cancels the run if it runs there

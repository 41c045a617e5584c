"""`runs signal` and `runs resume`: the client side, and `up`'s answer to a resume.

A signal is checked before it is sent: the run must exist, still run (or wait), be durable,
and its pipeline must have a wait step for that signal; otherwise the sender gets a clear
error and nothing is published. It is then published with JetStream's ack, so it is stored
even while no `up` runs.

A resume asks every `up` on `mesh.runs.resume.<run>`; those that serve the run's pipeline
try to create its lease (compare-and-set: one wins), record `run_resumed` and run it from
its first unfinished step; the winner answers.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from nats.js.errors import KeyNotFoundError

from runtime.core import protocol as p
from runtime.pipeline.spec import SIGNAL_PATTERN, PipelineSpec, walk_steps
from runtime.runs import events as ev
from runtime.runs.durable.journal_io import signal_subject
from runtime.runs.reader import check_run_id, read_run
from runtime.runs.summary import describe

RESUME_PREFIX = "mesh.runs.resume."
_OPEN = ("running", "waiting")


class ControlError(ValueError):
    """What `runs signal` or `runs resume` refuses, said plainly (the CLI exits 1)."""


async def _pipeline_spec(nc: Any, run: dict[str, Any]) -> PipelineSpec:
    """The definition the run started on, from `mesh-pipelines`; only durable runs have one."""
    start: dict[str, Any] = next((e for e in run["events"] if e["event"] == ev.RUN_STARTED), {})
    digest = start.get("definition")
    try:
        kv = await nc.jetstream(timeout=5).key_value(p.DEFINITIONS_BUCKET)
        entry = await kv.get(str(digest))
        return PipelineSpec.model_validate(json.loads(entry.value or b"")["spec"])
    except (KeyNotFoundError, Exception):
        raise ControlError(f"run {run['run']} is not a durable run (its pipeline "
                           f"'{run['pipeline']}' has no durable: true), so it takes no "
                           "signals and cannot be resumed") from None


async def send_signal(nc: Any, run_id: str, name: str, payload: Any) -> str:
    """Check, then store the signal; the pipeline's name. Raises ControlError."""
    check_run_id(run_id)
    import re

    if not re.fullmatch(SIGNAL_PATTERN, name):
        raise ControlError(f"invalid signal name {name!r}: letters, digits, _ and -")
    records = await read_run(nc, run_id)
    if not records:
        raise ControlError(f"no run {run_id} in the journal (it never ran, was not recorded, "
                           "or is older than runs.keep)")
    run = describe(run_id, records)
    if run["status"] not in _OPEN:
        raise ControlError(f"run {run_id} has ended ({run['status']}): it takes no signals")
    spec = await _pipeline_spec(nc, run)
    names = sorted({s.wait.signal for _, s in walk_steps(spec.steps) if s.wait is not None})
    if name not in names:
        waits = f"it waits for: {', '.join(names)}" if names else "it has no wait step"
        raise ControlError(f"pipeline '{run['pipeline']}' of run {run_id} waits for no signal "
                           f"'{name}' ({waits})")
    js = nc.jetstream(timeout=5)
    await js.publish(signal_subject(run_id, name), orjson.dumps(payload), stream=ev.STREAM)
    return str(run["pipeline"])


async def request_resume(nc: Any, run_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """Ask the `up` processes to resume a failed or cancelled durable run; the answer of the
    one that did. Raises ControlError."""
    check_run_id(run_id)
    records = await read_run(nc, run_id)
    if not records:
        raise ControlError(f"no run {run_id} in the journal")
    run = describe(run_id, records)
    if run["status"] not in ("failed", "cancelled"):
        raise ControlError(f"run {run_id} is {run['status']}: only a failed or cancelled run "
                           "is resumed")
    await _pipeline_spec(nc, run)
    try:
        reply = await nc.request(RESUME_PREFIX + run_id, b"", timeout=timeout)
    except Exception:
        raise ControlError(f"no live `up` serving '{run['pipeline']}' took run {run_id} "
                           f"within {timeout:g}s") from None
    answer = orjson.loads(reply.data or b"{}")
    if not isinstance(answer, dict) or answer.get("error"):
        raise ControlError(str(answer.get("error") if isinstance(answer, dict) else answer))
    return answer

"""What a run's events add up to: its status, its list row and its timeline.

Pure functions over Records (runtime.runs.reader): the CLI and the web page show the same.
A pipeline called by a run with the run's id (a step calling a pipeline) writes its events
under the same id; the run is the pipeline of the first `run_started`, and only its own
`run_*` events end it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runtime.runs import events as ev
from runtime.runs.reader import Record, run_of

RUNNING, OK, FAILED, CANCELLED, UNREADABLE = "running", "ok", "failed", "cancelled", "unreadable"
UNKNOWN = "unknown"  # readable events, but no start: older than the journal, or not a run
WAITING = "waiting"  # a durable run parked on a wait or sleep step
STATUSES = (RUNNING, WAITING, OK, FAILED, CANCELLED)
_ENDS = {ev.RUN_FINISHED: OK, ev.RUN_FAILED: FAILED, ev.RUN_CANCELLED: CANCELLED}
SHORT = 80  # characters of an output or error shown in a timeline line


def describe(run_id: str, records: list[Record]) -> dict[str, Any]:
    """A run as `runs show --json` prints it: run, pipeline, status, input, output | error,
    started, duration_ms, steps_done, step, trace_id, unreadable (count), events."""
    events = [r.event for r in records if r.event is not None]
    unreadable = len(records) - len(events)
    start = next((e for e in events if e["event"] == ev.RUN_STARTED), None)
    pipeline = start.get("pipeline") if start else None
    end = None
    for e in events:  # the last end counts: `runs resume` starts a failed run again
        if pipeline is None or e.get("pipeline") == pipeline:
            if e["event"] in _ENDS:
                end = e
            elif e["event"] == ev.RUN_RESUMED:
                end = None
    status = (_ENDS[end["event"]] if end else RUNNING if start
              else UNREADABLE if unreadable else UNKNOWN)
    if status == RUNNING and _parked(events, pipeline):
        status = WAITING
    started = start["at"] if start else (events[0]["at"] if events else None)
    finished = end["at"] if end else None
    done = {e["step"] for e in events if e["event"] in (ev.STEP_FINISHED, ev.STEP_SKIPPED)
            and e.get("pipeline") == pipeline and e["step"]}
    running = [e["step"] for e in events if e["event"] == ev.STEP_STARTED
               and e.get("pipeline") == pipeline and e["step"] not in done]
    run: dict[str, Any] = {
        "run": run_id, "pipeline": pipeline, "status": status,
        "started": started,
        "duration_ms": _ms(finished - started) if started is not None and finished else None,
        "steps_done": len(done), "step": running[-1] if running and not end else None,
        "trace_id": next((e["trace_id"] for e in events if e.get("trace_id")), None),
        "input": start.get("input") if start else None,
    }
    if end is not None and "output" in end:
        run["output"] = end["output"]
    if end is not None and "error" in end:
        run["error"] = end["error"]
    elif end is not None and end["event"] == ev.RUN_CANCELLED:
        run["error"] = {"code": CANCELLED, "message": f"run {run_id} was cancelled"}
    if unreadable:
        run["unreadable"] = unreadable
    run["events"] = [_with_offset(e, started) for e in events]
    return run


def _parked(events: list[dict[str, Any]], pipeline: Any) -> bool:
    """Whether a wait or sleep step parked the run and has not finished since."""
    waiting: set[str] = set()
    for e in events:
        if e.get("pipeline") != pipeline or not e.get("step"):
            continue
        if e["event"] == ev.STEP_WAITING:
            waiting.add(e["step"])
        elif e["event"] in (ev.STEP_FINISHED, ev.STEP_FAILED):
            waiting.discard(e["step"])
    return bool(waiting)


def row(run: dict[str, Any]) -> dict[str, Any]:
    """A `runs ls --json` row of a described run."""
    keys = ("run", "pipeline", "status", "started", "duration_ms", "steps_done", "step")
    out = {k: run.get(k) for k in keys}
    out["error"] = run.get("error")
    return out


def list_runs(records: Iterable[Record], pipeline: str | None = None, status: str | None = None,
              limit: int = 20) -> list[dict[str, Any]]:
    """Rows of the runs that started within `records`, newest first, filtered."""
    by_run: dict[str, list[Record]] = {}
    for record in records:
        by_run.setdefault(run_of(record.subject), []).append(record)
    rows = []
    for run_id, own in by_run.items():
        started = any(r.event and r.event["event"] == ev.RUN_STARTED for r in own)
        if not started and all(r.event is not None for r in own):
            continue  # its start is older than the window: not a run of this listing
        run = describe(run_id, own)
        if pipeline is not None and run["pipeline"] != pipeline:
            continue
        if status is not None and run["status"] != status:
            continue
        rows.append(row(run))
    rows.sort(key=lambda r: r["started"] or 0, reverse=True)
    return rows[:limit]


def timeline(run: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per event: offset_ms, event, step, attempt, duration_ms (a step's end:
    since its start), and short (a short output or error)."""
    opened: dict[tuple[Any, Any], float] = {}
    lines = []
    for event in run["events"]:
        kind, key = event["event"], (event.get("step"), event.get("attempt"))
        duration = None
        if kind == ev.STEP_STARTED:
            opened[key] = event["at"]
        elif kind in (ev.STEP_FINISHED, ev.STEP_FAILED) and key in opened:
            duration = _ms(event["at"] - opened.pop(key))
        elif kind in _ENDS and run.get("duration_ms") is not None:
            duration = run["duration_ms"]
        lines.append({"offset_ms": event.get("offset_ms"), "event": kind,
                      "step": event.get("step"), "attempt": event.get("attempt"),
                      "duration_ms": duration, "short": short_of(event)})
    return lines


def short_of(event: dict[str, Any]) -> str:
    """A short text of an event's output, error or progress, at most SHORT characters."""
    if "error" in event and isinstance(event["error"], dict):
        error = event["error"]
        text = f"{error.get('code')}: {error.get('message', '')}"
    elif event["event"] == ev.STEP_PROGRESS:
        fraction = event.get("progress")
        part = f"{fraction * 100:.0f}% " if isinstance(fraction, int | float) else ""
        text = f"{part}{event.get('message') or ''}".strip()
    elif "output" in event:
        text = ev.value_json(event["output"])[0].decode("utf-8", errors="replace")
    else:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= SHORT else text[:SHORT - 3] + "..."


def _with_offset(event: dict[str, Any], started: float | None) -> dict[str, Any]:
    if started is None:
        return event
    return {**event, "offset_ms": _ms(event["at"] - started)}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)

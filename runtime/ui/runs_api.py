"""Runs, read from the run journal through runtime.runs (as `mesh-runtime runs` reads
them): the list, one run, its events live; and cancel, resume and signal."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from runtime.core import protocol as p
from runtime.runs.control import cancel_run
from runtime.runs.durable.control import ControlError, request_resume, send_signal
from runtime.runs.reader import JournalUnavailable, check_run_id, follow_run, read_run, recent_records
from runtime.runs.summary import describe, list_runs
from runtime.ui.api import problem
from runtime.ui.live import event_stream
from runtime.ui.state import UiState, until_shutdown

LIMIT = 500  # rows a listing may ask for
EVENTS_LIMIT = 2000  # events of one run sent to the page
SIGNAL_LIMIT = 64 * 1024  # bytes of a signal's JSON


def routes() -> list[BaseRoute]:
    return [Route("/api/runs", runs), Route("/api/runs/{run}", run),
            Route("/api/runs/{run}/events", run_events),
            Route("/api/runs/{run}/cancel", cancel, methods=["POST"]),
            Route("/api/runs/{run}/resume", resume, methods=["POST"]),
            Route("/api/runs/{run}/signal", signal, methods=["POST"])]


async def runs(request: Request) -> Response:
    """`{"runs": [rows]}`, newest first, as `runs ls --json` prints them."""
    state = UiState.of(request)
    query = request.query_params
    try:
        limit = min(max(int(query.get("limit") or 50), 1), LIMIT)
    except ValueError:
        return problem(400, "invalid_limit", "limit is a whole number from 1")
    pipeline = query.get("pipeline") or None
    status = query.get("status") or None
    try:
        # a filtered list looks further back, so that a rare pipeline still shows
        records = await recent_records(state.nc, limit * (4 if pipeline or status else 1))
    except JournalUnavailable as exc:
        return problem(503, "no_journal", str(exc))
    return JSONResponse({"runs": list_runs(records, pipeline, status, limit)})


async def run(request: Request) -> Response:
    """`runs show --json`'s object."""
    state = UiState.of(request)
    run_id = request.path_params["run"]
    try:
        records = await read_run(state.nc, run_id)
    except ValueError as exc:
        return problem(400, "invalid_run", str(exc))
    except JournalUnavailable as exc:
        return problem(503, "no_journal", str(exc))
    if not records:
        return problem(404, p.NOT_FOUND, f"no run {run_id} in the journal (it never ran, was "
                       "not recorded, or is older than runs.keep)")
    shown = describe(run_id, records)
    if len(shown["events"]) > EVENTS_LIMIT:  # anyone may publish on mesh.run.<id>.>
        shown["events_cut"] = len(shown["events"])
        shown["events"] = shown["events"][:EVENTS_LIMIT]
    return JSONResponse(shown)


async def run_events(request: Request) -> EventSourceResponse | Response:
    """The run's events from its first, `journal` each with its `index` among the run's
    events (the page skips those it has), then `end` when the run ends."""
    state = UiState.of(request)
    run_id = request.path_params["run"]
    try:
        check_run_id(run_id)
    except ValueError as exc:
        return problem(400, "invalid_run", str(exc))

    async def events() -> AsyncIterator[dict[str, Any]]:
        index = 0
        try:
            async for record in until_shutdown(follow_run(state.nc, run_id), state.shutdown):
                if record.event is not None:
                    yield {"event": "journal", "data": {**record.event, "index": index}}
                    index += 1
        except (LookupError, JournalUnavailable) as exc:
            yield {"event": "problem", "data": {"code": p.NOT_FOUND, "message": str(exc)}}
        yield {"event": "end", "data": {}}

    return event_stream(events())


async def cancel(request: Request) -> Response:
    """What `mesh-runtime runs cancel` does: ask the process running it."""
    state = UiState.of(request)
    run_id = request.path_params["run"]
    try:
        answer = await cancel_run(state.nc, run_id)
    except ValueError as exc:
        return problem(400, "invalid_run", str(exc))
    if answer is not None:
        return JSONResponse({"ok": True, "message": f"cancelled run {run_id}"})
    return await _not_running(state, run_id, "cancel")


async def resume(request: Request) -> Response:
    """What `mesh-runtime runs resume` does: checks the run, then asks the `up` processes."""
    state = UiState.of(request)
    run_id = request.path_params["run"]
    try:
        answer = await request_resume(state.nc, run_id)
    except ControlError as exc:
        return problem(409, "not_resumed", str(exc))
    except ValueError as exc:
        return problem(400, "invalid_run", str(exc))
    except JournalUnavailable as exc:
        return problem(503, "no_journal", str(exc))
    where = answer.get("instance")
    return JSONResponse({"ok": True, "message": f"resumed run {run_id}"
                         + (f" on instance {where}" if where else ""), "answer": answer})


async def signal(request: Request) -> Response:
    """What `mesh-runtime runs signal` does: checks that the run waits for it, then stores
    `{"name", "data"}`'s data (JSON text, default null) on mesh.run.<id>.signal.<name>."""
    state = UiState.of(request)
    run_id = request.path_params["run"]
    body = await request.body()
    if len(body) > SIGNAL_LIMIT:
        return problem(413, "too_large", f"a signal is at most {SIGNAL_LIMIT // 1024} KB")
    try:
        asked = json.loads(body or b"{}")
    except ValueError as exc:
        return problem(400, "invalid_json", f"the request is not JSON: {exc}")
    asked = asked if isinstance(asked, dict) else {}
    name, text = str(asked.get("name") or ""), str(asked.get("data") or "").strip()
    try:
        data = json.loads(text) if text else None
    except ValueError as exc:
        return problem(400, "invalid_json", f"the signal's data is not JSON: {exc}")
    try:
        pipeline = await send_signal(state.nc, run_id, name, data)
    except ControlError as exc:
        return problem(409, "not_sent", str(exc))
    except ValueError as exc:
        return problem(400, "invalid_run", str(exc))
    except JournalUnavailable as exc:
        return problem(503, "no_journal", str(exc))
    return JSONResponse({"ok": True,
                         "message": f"signal '{name}' sent to run {run_id} ({pipeline})"})


async def _not_running(state: UiState, run_id: str, what: str) -> Response:
    records = await read_run(state.nc, run_id)
    if not records:
        return problem(404, p.NOT_FOUND, f"no run {run_id} is running, and the journal has none")
    status = describe(run_id, records)["status"]
    return problem(409, "not_running", f"cannot {what} run {run_id}: it is not running "
                   f"anywhere (status: {status})")

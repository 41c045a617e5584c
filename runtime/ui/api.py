"""The page's JSON API: the mesh, one agent or pipeline, a call, recent errors."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runtime.core import protocol as p
from runtime.core.names import check_name
from runtime.core.requestids import new_request_id
from runtime.core.text import suggest
from runtime.nats.caller import call_agent as call
from runtime.nats.caller import start_run
from runtime.nats.client import stream
from runtime.nats.listing import full_catalog
from runtime.nats.registry import mapping, registry_card
from runtime.observe.describe import describe
from runtime.ui.outline import outline
from runtime.ui.state import UiState

BODY_LIMIT = 1024 * 1024  # a form's payload
CHUNKS_LIMIT = 1000  # chunks of a streaming answer shown


def problem(status: int, code: str, message: str) -> JSONResponse:
    """The structured error every API path answers with: `{"ok": false, "error": {...}}`."""
    return JSONResponse({"ok": False, "error": {"code": code, "message": message}}, status)


async def mesh(request: Request) -> Response:
    return JSONResponse(await UiState.of(request).watch.now())


async def errors(request: Request) -> Response:
    return JSONResponse({"errors": list(UiState.of(request).errors.recent)})


async def agent(request: Request) -> Response:
    """`describe`'s object, plus triggers and the pipeline's drawable outline."""
    state = UiState.of(request)
    name = request.path_params["name"]
    entries = await full_catalog(state.nc)
    if entries is None:
        return problem(503, "no_jetstream", "this NATS server has no JetStream, so no catalog")
    entry = next((e for e in entries if e.get("name") == name), None)
    if entry is None:
        return problem(404, p.NOT_FOUND, f"no agent or pipeline named '{name}' in the catalog"
                       f"{suggest(name, [str(e.get('name')) for e in entries])}")
    info = await describe(state.nc, entry)
    extension = mapping(mapping(await registry_card(state.nc, name)).get("x-agentmesh"))
    info.setdefault("triggers", [])  # `subject orders.created`: text from the catalog entry
    info["graph"] = outline(extension.get("pipeline"), info["triggers"])
    return JSONResponse(info)


async def call_agent(request: Request) -> Response:
    """Calls `name` with the request's body (JSON text) and answers `{"ok", "result" |
    "error", "ms"}`: a MeshError is an answer (200), the page's own mistakes are 400."""
    state = UiState.of(request)
    name = request.path_params["name"]
    try:
        check_name(name)
    except ValueError as exc:
        return problem(400, p.INVALID_INPUT, str(exc))
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > BODY_LIMIT:
            return problem(413, "too_large", f"the input is over {BODY_LIMIT // 1024} KB")
    text = body.decode("utf-8", "replace")
    try:
        payload = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        return problem(400, "invalid_json", f"the input is not JSON: {exc}")
    timeout = _timeout(request.query_params.get("timeout"), state.settings.call_timeout)
    started = time.perf_counter()
    request_id = new_request_id()  # a pipeline's run id: the page links to the run
    try:
        if request.query_params.get("async") == "true":
            run = await start_run(state.nc, name, payload, timeout, request_id)
            return JSONResponse({"ok": True, "run": run, "ms": _ms(started)})
        if request.query_params.get("stream") == "true":
            result: Any = []
            async for piece in stream(state.nc, name, payload, timeout):
                if len(result) < CHUNKS_LIMIT:
                    result.append(piece)
        else:
            result = await call(state.nc, name, payload, timeout, request_id)
    except p.MeshError as exc:
        return JSONResponse({"ok": False, "error": exc.to_dict(), "request_id": request_id,
                             "ms": _ms(started)})
    return JSONResponse({"ok": True, "result": result, "request_id": request_id,
                         "ms": _ms(started)})


def _timeout(text: str | None, default: float) -> float:
    try:
        value = float(text) if text else default
    except ValueError:
        return default
    return min(max(value, 0.1), 600.0)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)

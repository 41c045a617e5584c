"""Payloads in and out of a service: decode and check the request, check and encode the result,
and turn any failure into the MeshError a caller is answered with."""

from __future__ import annotations

from typing import Any

from runtime.core import protocol as p
from runtime.load.handlers import InputModelError
from runtime.load.mesh import Endpoint
from runtime.serve import exact_json


def decode_input(data: bytes, definition: Endpoint) -> Any:
    if not data:
        payload: Any = {}  # OpenAgentMesh sends an empty body for a call without payload
    else:
        try:
            payload = exact_json.loads(data)
        except exact_json.PayloadError as exc:
            raise p.MeshError(p.INVALID_INPUT, f"request body is {exc}",
                              details={"errors": [{"path": "", "message": str(exc)}]}) from None
    schema = definition.input
    if schema is not None:
        if schema.fill_defaults is not None:
            schema.fill_defaults(payload)
        if not schema.validator.is_valid(payload):
            errors = schema.errors(payload)
            raise p.MeshError(p.INVALID_INPUT, _summary("input", errors),
                              details={"errors": errors})
    return payload


def encode_output(result: Any, definition: Endpoint) -> bytes:
    schema = definition.output
    if schema is not None and not schema.validator.is_valid(result):
        errors = schema.errors(result)
        raise p.MeshError(p.INVALID_OUTPUT, _summary("output", errors), details={"errors": errors})
    try:
        return exact_json.dumps(result)
    except TypeError as exc:
        raise p.MeshError(p.INVALID_OUTPUT, f"output is not JSON-serializable: {exc}") from None


def _summary(what: str, errors: list[dict[str, str]]) -> str:
    first = errors[0] if errors else {"path": "", "message": "does not match the schema"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{what} does not match the schema: {first['path'] or '/'}: {first['message']}{more}"


def mismatch_error(definition: Endpoint, streaming: bool) -> p.MeshError:
    if definition.streaming:
        message = f"'{definition.name}' is streaming-only: use stream() instead of call()"
    else:
        message = f"'{definition.name}' does not stream: use call() instead of stream()"
    return p.MeshError(p.INVOCATION_MISMATCH, message)


def as_mesh_error(exc: BaseException, definition: Endpoint) -> p.MeshError:
    if isinstance(exc, p.MeshError):
        return exc
    if isinstance(exc, InputModelError):
        return p.MeshError(p.INVALID_INPUT, _summary("input", exc.errors),
                           details={"errors": exc.errors})
    return p.MeshError(p.HANDLER_ERROR, f"{type(exc).__name__}: {exc}")

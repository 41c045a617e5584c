"""One served name on NATS: its queue-group subscription and the request path.

The definition behind a name can be swapped by a reload while requests run: each
request reads `service.definition` once, on arrival, and finishes on that one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from runtime import protocol as p
from runtime.context import Caller, Context
from runtime.handlers import InputModelError
from runtime.mesh import AgentDef, Endpoint, PipelineDef

log = logging.getLogger("mesh-runtime")
Runner = Callable[[Endpoint, Any, Context], Awaitable[Any]]


class Service:
    """Serves one agent or pipeline: subscribe, answer, drain."""

    def __init__(self, nc: Client, definition: Endpoint, caller: Caller, mesh_name: str):
        self.nc = nc
        self.caller = caller
        self.mesh_name = mesh_name
        self.name = definition.name
        self.subject = p.agent_subject(self.name)
        self.error_subject = p.error_subject(self.name)
        self.logger = logging.getLogger(f"mesh-runtime.agent.{self.name}")
        self.subscription: Subscription | None = None
        self.in_flight: set[asyncio.Task[None]] = set()
        self.update(definition)

    def update(self, definition: Endpoint) -> None:
        """Use `definition` for the next request; requests in flight keep theirs."""
        self.definition = definition
        self.slots = asyncio.Semaphore(definition.concurrency)

    async def start(self) -> None:
        self.subscription = await self.nc.subscribe(
            self.subject, queue=p.queue_group(self.name), cb=self._on_message,
            pending_msgs_limit=-1, pending_bytes_limit=-1)

    async def stop(self) -> None:
        """Stop taking requests, then let those in flight finish (each within its timeout)."""
        if self.subscription is not None:
            await self.subscription.unsubscribe()
            self.subscription = None
        if self.in_flight:
            await asyncio.wait(list(self.in_flight))

    async def _on_message(self, msg: Msg) -> None:
        # nats-py awaits this callback message by message: hand each request to its own
        # task at once, so one slow handler never holds up the next request.
        task = asyncio.create_task(self._handle(msg, self.definition, self.slots))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _handle(self, msg: Msg, definition: Endpoint, slots: asyncio.Semaphore) -> None:
        headers = msg.headers or {}
        request_id = headers.get(p.HDR_REQUEST_ID) or uuid.uuid4().hex
        streaming = headers.get(p.HDR_STREAM) == "true"
        try:
            if streaming != definition.streaming:
                raise _mismatch(definition, streaming)
            payload = _decode(msg.data, definition)
            deadline = time.monotonic() + definition.timeout
            ctx = Context(request_id, self.name, _config(definition), self.logger, deadline,
                          self.caller)
            result = await self._run_within_deadline(definition, slots, payload, ctx, streaming)
            if streaming:
                return
            body = _encode_output(result, definition)
            if msg.reply:
                await self.nc.publish(msg.reply, body, headers={
                    p.HDR_STATUS: "ok", p.HDR_REQUEST_ID: request_id, p.HDR_SOURCE: self.name})
        except Exception as exc:  # every failure is an answer, never a crash
            await self._fail(msg, _as_mesh_error(exc, definition), request_id, streaming)

    async def _run_within_deadline(self, definition: Endpoint, slots: asyncio.Semaphore,
                                   payload: Any, ctx: Context, streaming: bool) -> Any:
        """Wait for a concurrency slot and run, both within the request's one deadline."""
        acquired = False
        try:
            async with asyncio.timeout(definition.timeout):
                await slots.acquire()  # excess requests wait here for a slot
                acquired = True
                if streaming:
                    return await self._stream(definition, payload, ctx)
                return await self._run(definition, payload, ctx)
        except TimeoutError:
            if acquired:
                raise p.MeshError(p.TIMEOUT, f"'{self.name}' did not finish within "
                                  f"{definition.timeout:g}s") from None
            raise p.MeshError(p.OVERLOADED, f"'{self.name}' stayed at its concurrency limit "
                              f"({definition.concurrency}) for {definition.timeout:g}s") from None
        finally:
            if acquired:
                slots.release()

    async def _run(self, definition: Endpoint, payload: Any, ctx: Context) -> Any:
        if isinstance(definition, AgentDef):
            assert definition.handler.invoke is not None
            return await definition.handler.invoke(payload, ctx)
        assert isinstance(definition, PipelineDef)
        return await definition.compiled.run(
            payload, call=self.caller, request_id=ctx.request_id, mesh_name=self.mesh_name,
            default_timeout=definition.timeout)

    async def _stream(self, definition: Endpoint, payload: Any, ctx: Context) -> None:
        assert isinstance(definition, AgentDef) and definition.handler.stream is not None
        subject = p.stream_subject(ctx.request_id)
        seq = 0
        async for chunk in definition.handler.stream(payload, ctx):
            await self.nc.publish(subject, _encode_output(chunk, definition), headers={
                p.HDR_STREAM_SEQ: str(seq), p.HDR_STREAM_END: "false",
                p.HDR_REQUEST_ID: ctx.request_id})
            seq += 1
        await self.nc.publish(subject, b"", headers={
            p.HDR_STREAM_SEQ: str(seq), p.HDR_STREAM_END: "true",
            p.HDR_REQUEST_ID: ctx.request_id})

    async def _fail(self, msg: Msg, error: p.MeshError, request_id: str, streaming: bool) -> None:
        error.agent = error.agent or self.name
        error.request_id = request_id
        body = error.to_json()
        headers = {p.HDR_STATUS: "error", p.HDR_REQUEST_ID: request_id, p.HDR_SOURCE: self.name}
        try:
            if streaming:
                await self.nc.publish(p.stream_subject(request_id), body,
                                      headers={**headers, p.HDR_STREAM_END: "true"})
            elif msg.reply:
                await self.nc.publish(msg.reply, body, headers=headers)
            await self.nc.publish(self.error_subject, body, headers=headers)
        except Exception as exc:  # the connection is down: nothing more to tell the caller
            log.warning("could not send %s error for %s: %s", error.code, self.name, exc)
        if error.code == p.HANDLER_ERROR:
            self.logger.warning("handler failed (request %s): %s", request_id, error.message)


def _decode(data: bytes, definition: Endpoint) -> Any:
    if not data:
        payload: Any = {}  # OpenAgentMesh sends an empty body for a call without payload
    else:
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise p.MeshError(p.INVALID_INPUT, f"request body is not JSON: {exc}",
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


def _encode_output(result: Any, definition: Endpoint) -> bytes:
    schema = definition.output
    if schema is not None and not schema.validator.is_valid(result):
        errors = schema.errors(result)
        raise p.MeshError(p.INVALID_OUTPUT, _summary("output", errors), details={"errors": errors})
    try:
        return json.dumps(result).encode()
    except (TypeError, ValueError) as exc:
        raise p.MeshError(p.INVALID_OUTPUT, f"output is not JSON-serializable: {exc}") from None


def _summary(what: str, errors: list[dict[str, str]]) -> str:
    first = errors[0] if errors else {"path": "", "message": "does not match the schema"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{what} does not match the schema: {first['path'] or '/'}: {first['message']}{more}"


def _mismatch(definition: Endpoint, streaming: bool) -> p.MeshError:
    if definition.streaming:
        message = f"'{definition.name}' is streaming-only: use stream() instead of call()"
    else:
        message = f"'{definition.name}' does not stream: use call() instead of stream()"
    return p.MeshError(p.INVOCATION_MISMATCH, message)


def _config(definition: Endpoint) -> dict[str, Any]:
    return definition.spec.config if isinstance(definition, AgentDef) else {}


def _as_mesh_error(exc: BaseException, definition: Endpoint) -> p.MeshError:
    if isinstance(exc, p.MeshError):
        return exc
    if isinstance(exc, TimeoutError):
        return p.MeshError(p.TIMEOUT, f"'{definition.name}' did not finish within "
                           f"{definition.timeout:g}s")
    if isinstance(exc, InputModelError):
        return p.MeshError(p.INVALID_INPUT, _summary("input", exc.errors),
                           details={"errors": exc.errors})
    return p.MeshError(p.HANDLER_ERROR, f"{type(exc).__name__}: {exc}")

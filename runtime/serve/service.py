"""One served name on NATS: its queue-group subscription and the request path.

The definition behind a name can be swapped by a reload while requests run: each
request reads `service.definition` once, on arrival, and finishes on that one.
This is the hot path: everything that can be known at load time is, already.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from runtime.core import protocol as p
from runtime.core.context import Bus, Context
from runtime.core.events import continue_trace
from runtime.core.requestids import new_request_id
from runtime.core.text import is_request_id, shown
from runtime.load.handlers import ThreadOverrun
from runtime.load.mesh import AgentDef, Endpoint, PipelineDef
from runtime.nats.guard import oversize
from runtime.nats.headerblock import HeaderBlock, publish
from runtime.runs.active import Runs
from runtime.runs.durable.lifecycle import Detached
from runtime.serve.admission import PENDING_BYTES, PENDING_MSGS, YIELD_EVERY, Admission, run_error
from runtime.serve.capabilities import Offers
from runtime.serve.codec import as_mesh_error, decode_input, encode_output, mismatch_error
from runtime.serve.deadlines import Deadlines
from runtime.serve.failures import FailureLog
from runtime.serve.replies import (
    DROPPED,
    error_body,
    header_size,
    headroom,
    service_error_headers,
    too_big,
)
from runtime.serve.stats import EndpointStats
from runtime.tracing import TRACEPARENT, enter, recorder, trace_id_in, traceparent_for

log = logging.getLogger("mesh-runtime")


class Service:
    """Serves one agent or pipeline: subscribe, answer, drain."""

    def __init__(self, nc: Client, definition: Endpoint, caller: Bus, mesh_name: str,
                 deadlines: Deadlines, instance: str = "", runs: Runs | None = None):
        self.nc = nc
        self.runs = runs if runs is not None else Runs(None, instance)  # pipelines run there
        self.deadlines = deadlines
        self.caller = caller
        self.mesh_name = mesh_name
        self.name = definition.name
        self.subject = p.agent_subject(self.name)
        self.error_subject = p.error_subject(self.name)
        self.logger = logging.getLogger(f"mesh-runtime.agent.{self.name}")
        self.headroom = headroom(self.name)  # header bytes: body + this must fit max_payload
        self.subscription: Subscription | None = None
        self.offers = Offers(nc, self._on_message)  # capability and broadcast subscriptions
        self.instance = instance  # this process, named in broadcast answers
        # A reply's header bytes, made once: each reply only adds its request id.
        self.ok_block = HeaderBlock({p.HDR_STATUS: "ok", p.HDR_SOURCE: self.name})
        self.broadcast_ok_block = HeaderBlock({p.HDR_STATUS: "ok", p.HDR_SOURCE: self.name,
                                               p.HDR_INSTANCE_ID: instance})
        self.in_flight = 0  # request tasks (running, or answering a refusal)
        self.stats = EndpointStats()
        self.failures = FailureLog(self.logger)
        self.spans = recorder()  # None unless this process exports spans
        self.admission = Admission(self.name, deadlines, self._start,
                                   lambda: self.definition.concurrency, self.logger)
        self._idle = asyncio.Event()
        self._idle.set()
        self._yielded = 0.0  # when refusals last let the loop run others
        self.update(definition)

    def update(self, definition: Endpoint) -> None:
        """Use `definition` for the next request; requests in flight keep theirs. Its
        limits apply at once: old and new requests count against the same slots."""
        self.definition = definition

    async def start(self) -> None:
        self.subscription = await self.nc.subscribe(
            self.subject, queue=p.queue_group(self.name), cb=self._on_message,
            pending_msgs_limit=PENDING_MSGS, pending_bytes_limit=PENDING_BYTES)
        await self.offers.serve(self.definition.capabilities)

    async def stop(self) -> None:
        """Stop taking requests, then let those in flight finish (each within its timeout)."""
        if self.subscription is not None:
            await self.subscription.unsubscribe()
            self.subscription = None
        await self.offers.stop()
        await self._idle.wait()

    async def _on_message(self, msg: Msg) -> None:
        # nats-py awaits this callback message by message: hand each request to its own
        # task at once (or to the line), so one slow handler never holds up the next.
        if msg.reply[:1] == "$":  # JetStream API, KV, $SYS: never publish there for a caller
            DROPPED.note(self.name, msg.reply)
            return
        definition = self.definition
        admitted = self.admission.admit(msg, definition)
        if admitted is None:  # it waits in the line
            self._idle.clear()  # its slots may all be held by stuck threads, with no task
            return
        arrival, deadline, refusal = admitted
        if refusal is not None:  # answered here, with no task: a flood costs as little as can be
            started_ns = time.perf_counter_ns()
            spans = self.spans  # in the request's span, when spans are on and it is sampled
            answer = self._traced if spans is not None and spans.sampled(msg.headers) else self._answer
            error = await answer(msg, definition, arrival, deadline, refusal)
            self.stats.record(time.perf_counter_ns() - started_ns, error)
            # nats-py hands over a backlog without ever yielding: give the requests being
            # served a turn every 5 ms of refusals, or a flood starves them of the loop.
            if arrival - self._yielded > YIELD_EVERY:
                self._yielded = arrival
                await asyncio.sleep(0)
            return
        self._start(msg, definition, arrival, deadline, None)

    def _start(self, msg: Msg, definition: Endpoint, arrival: float, deadline: float,
               refusal: p.MeshError | None) -> None:
        if self.in_flight == 0:
            self._idle.clear()
        self.in_flight += 1
        if refusal is None:
            self.admission.running += 1
        task = _start_task(asyncio.get_running_loop(), self._handle(
            msg, definition, arrival, deadline, refusal, time.perf_counter_ns()))
        if refusal is None and not task.done():  # an eager task may have answered already
            self.deadlines.add(task, deadline)

    async def _handle(self, msg: Msg, definition: Endpoint, arrival: float, deadline: float,
                      refusal: p.MeshError | None, started_ns: int) -> None:
        try:
            spans = self.spans  # in the request's span, when spans are on and it is sampled
            answer = self._traced if spans is not None and spans.sampled(msg.headers) else self._answer
            error = await answer(msg, definition, arrival, deadline, refusal)
            self.stats.record(time.perf_counter_ns() - started_ns, error)
        except GeneratorExit:
            # asyncio throws a future's exception into a task's top coroutine; for a
            # GeneratorExit (a sync handler raised it) that first closes `_answer`, whose
            # except clause answers the caller then: nothing is left to do here.
            pass
        finally:
            self.in_flight -= 1
            if refusal is None:
                self.admission.release()
            if self.in_flight == 0 and not self.admission.waiting:
                self._idle.set()

    async def _answer(self, msg: Msg, definition: Endpoint, arrival: float, deadline: float,
                      refusal: p.MeshError | None) -> p.MeshError | None:
        """Answer one request; the error it was answered with, if any."""
        headers = msg.headers
        request_id = headers.get(p.HDR_REQUEST_ID) if headers else None
        streaming = headers is not None and headers.get(p.HDR_STREAM) == "true"
        continue_trace(headers)  # events this request emits continue its trace
        if not request_id:
            request_id = new_request_id()
        elif not is_request_id(request_id):  # it would be spliced into mesh.stream.<id>
            error = _bad_request_id(request_id)
            traceparent = traceparent_for(headers)
            await self._fail(msg, error, new_request_id(), False, traceparent)
            self.failures.failed(error, error, traceparent[3:35])
            return error
        task = asyncio.current_task()
        assert task is not None
        try:
            if refusal is not None:
                raise refusal
            if streaming != definition.streaming:
                raise mismatch_error(definition, streaming)
            payload = decode_input(msg.data, definition)
            if headers is not None and headers.get(p.HDR_ASYNC) == "true":
                deadline = await self._detach(msg, definition, request_id, arrival)
            try:
                if streaming:
                    await self._stream(definition, payload, request_id, deadline, msg.headers)
                    return None
                result = await self._run(definition, payload, request_id, deadline, headers,
                                         msg.reply)
            except ThreadOverrun as overrun:
                self.admission.hold(overrun.thread)
                if not self.deadlines.done(task):
                    raise asyncio.CancelledError from None  # not ours: let it through
                raise run_error(definition, arrival, deadline) from None
            except asyncio.CancelledError:
                if not self.deadlines.done(task):
                    raise  # a shutdown's (let it through) or the handler's own (answered below)
                raise run_error(definition, arrival, deadline) from None
            finally:
                self.deadlines.done(task)
            body = encode_output(result, definition)
            if msg.reply:
                block = (self.broadcast_ok_block  # says which process answered
                         if msg.subject.startswith(p.BROADCAST_SUBJECT_PREFIX) else self.ok_block)
                if len(body) > self.nc.max_payload - self.headroom:
                    raise too_big(body, block.headers_for(request_id), self.nc.max_payload)
                await publish(self.nc, msg.reply, body, block, request_id)
            return None
        except asyncio.CancelledError as exc:
            if task.cancelling():
                raise  # the runtime cancelled this request (shutdown): not the handler's doing
            return await self._failed(msg, exc, definition, request_id, streaming)
        except Detached:
            return None  # a durable run parked or moved: whoever ends it answers
        except BaseException as exc:  # SystemExit from a handler too: every failure is an answer
            return await self._failed(msg, exc, definition, request_id, streaming)

    def _traced(self, msg: Msg, definition: Endpoint, arrival: float, deadline: float,
                refusal: p.MeshError | None) -> Coroutine[Any, Any, p.MeshError | None]:
        """`_answer`, inside the request's SERVER span (a sampled request, spans on); a
        plain function returning the span's coroutine: no frame of its own to await."""
        assert self.spans is not None
        headers = msg.headers
        request_id = headers.get(p.HDR_REQUEST_ID) if headers else None
        if not request_id:  # made here, so that the span and the reply name the same id
            request_id = new_request_id()
            msg.headers = headers = {**(headers or {}), p.HDR_REQUEST_ID: request_id}
        return self.spans.serve(self._answer(msg, definition, arrival, deadline, refusal),
                                headers, self.subject,
                                request_id if is_request_id(request_id) else "")

    async def _detach(self, msg: Msg, definition: Endpoint, request_id: str,
                      arrival: float) -> float:
        """X-Mesh-Async: answer the run id now and run on, bounded by the pipeline's own
        timeout only; the new deadline. Its result and errors go to the journal (and errors
        to mesh.errors.<name>), not to the caller, who has its answer."""
        if not isinstance(definition, PipelineDef):
            raise p.MeshError(p.INVALID_INPUT, f"{p.HDR_ASYNC} applies to pipelines; "
                              f"'{self.name}' is an agent: call it without it")
        if msg.reply:
            body = b'{"run":"%s","status":"running"}' % request_id.encode()
            await publish(self.nc, msg.reply, body, self.ok_block, request_id)
            msg.reply = ""  # answered: nothing more goes there
        task = asyncio.current_task()
        assert task is not None
        self.deadlines.done(task)
        deadline = arrival + definition.timeout
        self.deadlines.add(task, deadline)
        return deadline

    async def _failed(self, msg: Msg, exc: BaseException, definition: Endpoint, request_id: str,
                      streaming: bool) -> p.MeshError:
        error = as_mesh_error(exc, definition)
        traceparent = traceparent_for(msg.headers)  # the log line and mesh.errors name it
        await self._fail(msg, error, request_id, streaming, traceparent)
        self.failures.failed(error, exc, traceparent[3:35])
        return error

    def _context(self, definition: AgentDef, request_id: str, deadline: float,
                 headers: dict[str, str] | None = None) -> Context | None:
        if not definition.handler.wants_context:
            return None  # most handlers take only the payload: build nothing for them
        enter(headers)  # its ctx.call, broadcasts and state writes continue the caller's trace
        key = headers.get(p.HDR_IDEMPOTENCY_KEY) if headers else None
        return Context(request_id, self.name, definition.spec.config, self.logger,
                       deadline, self.caller, key)

    async def _run(self, definition: Endpoint, payload: Any, request_id: str,
                   deadline: float, headers: dict[str, str] | None = None,
                   reply: str = "") -> Any:
        if isinstance(definition, AgentDef):
            assert definition.handler.invoke is not None
            return await definition.handler.invoke(
                payload, self._context(definition, request_id, deadline, headers))
        assert isinstance(definition, PipelineDef)
        hop = enter(headers)  # a run always has a trace, its steps continue it; the journal
        if trace_id_in(headers) != hop.trace_id:  # reads it from the request's traceparent
            headers = {**(headers or {}), TRACEPARENT: hop.headers()[TRACEPARENT]}
        return await self.runs.run(  # recorded; steps get no more than the request has left
            definition, payload, request_id, headers, bus=self.caller,
            mesh_name=self.mesh_name, caller_left=deadline - time.monotonic(), reply=reply)

    async def _stream(self, definition: Endpoint, payload: Any, request_id: str,
                      deadline: float, headers: dict[str, str] | None) -> None:
        assert isinstance(definition, AgentDef) and definition.handler.stream is not None
        subject = p.stream_subject(request_id)
        seq = 0
        ctx = self._context(definition, request_id, deadline, headers)
        async for chunk in definition.handler.stream(payload, ctx):
            body = encode_output(chunk, definition)
            headers = {p.HDR_STREAM_SEQ: str(seq), p.HDR_STREAM_END: "false",
                       p.HDR_REQUEST_ID: request_id}
            if len(body) > self.nc.max_payload - self.headroom:
                raise too_big(body, headers, self.nc.max_payload)
            await self.nc.publish(subject, body, headers=headers)
            seq += 1
        await self.nc.publish(subject, b"", headers={
            p.HDR_STREAM_SEQ: str(seq), p.HDR_STREAM_END: "true", p.HDR_REQUEST_ID: request_id})

    async def _fail(self, msg: Msg, error: p.MeshError, request_id: str, streaming: bool,
                    traceparent: str | None = None) -> None:
        error.agent = error.agent or self.name
        error.request_id = request_id
        headers = {p.HDR_STATUS: "error", p.HDR_REQUEST_ID: request_id, p.HDR_SOURCE: self.name,
                   **service_error_headers(error)}
        if traceparent is not None:  # the request's trace, for whoever watches the errors
            headers[TRACEPARENT] = traceparent
        if msg.subject.startswith(p.BROADCAST_SUBJECT_PREFIX):
            headers[p.HDR_INSTANCE_ID] = self.instance
        # Room for the body: the server's max_payload less these headers (and a stream end).
        body = error_body(error, self.nc.max_payload - header_size(headers) - 32)
        if oversize(self.nc, body, headers, 32):  # the last check: never send what NATS refuses
            log.warning("could not send %s error for %s: %d bytes, over max_payload",
                        shown(error.code, 64), self.name, len(body))
            return
        try:
            if streaming:
                await self.nc.publish(p.stream_subject(request_id), body,
                                      headers={**headers, p.HDR_STREAM_END: "true"})
            elif msg.reply:
                await self.nc.publish(msg.reply, body, headers=headers)
            await self.nc.publish(self.error_subject, body, headers=headers)
        except Exception as exc:  # the connection is down: nothing more to tell the caller
            log.warning("could not send %s error for %s: %s", shown(error.code, 64), self.name,
                        shown(str(exc)))


def _bad_request_id(request_id: str) -> p.MeshError:
    # Never echoed: the id is the caller's text, and the reason is all they need.
    return p.MeshError(
        p.INVALID_INPUT, f"{p.HDR_REQUEST_ID} must be 1 to 128 characters of A-Z, a-z, 0-9, "
        f"_ and -; this one has {len(request_id)} characters",
        details={"errors": [{"path": "", "message": f"invalid {p.HDR_REQUEST_ID} header"}]})


# Python 3.12+ can start a task eagerly: it runs at once, inside this callback, until its
# first real wait, and a request that needs none is answered without a trip through the
# event loop's queue; asyncio.current_task() is still the request's own task throughout.
_eager_task_factory = getattr(asyncio, "eager_task_factory", None)


def _start_task(loop: asyncio.AbstractEventLoop,
                coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    if _eager_task_factory is not None:
        task: asyncio.Task[None] = _eager_task_factory(loop, coro)
        return task
    return loop.create_task(coro)

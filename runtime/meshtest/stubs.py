"""A stub: stands in for one agent during a test case, answering as the agent would."""

from __future__ import annotations

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from runtime.core import protocol as p
from runtime.load.mesh import Mesh
from runtime.load.schemas import PayloadSchema
from runtime.meshtest.testfile import Answer, Stubbed

STUB_INSTANCE = "test-stub"  # the instance id a stub's broadcast answers carry


class Stub:
    """Answers one name's calls (and calls and broadcasts to its capabilities) with the
    case's answers: one for every call, or a list in order, shared by all of them."""

    def __init__(self, nc: Client, name: str, stubbed: Stubbed, capabilities: tuple[str, ...] = (),
                 input_schema: PayloadSchema | None = None):
        self.nc = nc
        self.name = name
        self.stubbed = stubbed
        self.capabilities = capabilities
        self.input_schema = input_schema
        self.calls = 0
        self.subscriptions: list[Subscription] = []

    async def start(self) -> None:
        routes: list[tuple[str, str | None]] = [(p.agent_subject(self.name), p.queue_group(self.name))]
        for capability in self.capabilities:
            routes.append((p.capability_subject(capability), p.capability_queue_group(capability)))
            routes.append((p.broadcast_subject(capability), None))
        for subject, queue in routes:
            self.subscriptions.append(await self.nc.subscribe(subject, queue=queue or "",
                                                              cb=self.respond))

    async def stop(self) -> None:
        for subscription in self.subscriptions:
            await subscription.unsubscribe()
        self.subscriptions.clear()

    def next_answer(self) -> Answer | None:
        self.calls += 1
        answers = self.stubbed.answers
        if self.stubbed.repeat:
            return answers[0]
        return answers[self.calls - 1] if self.calls <= len(answers) else None

    async def respond(self, msg: Msg) -> None:
        if not msg.reply:
            return
        request_id = (msg.headers or {}).get(p.HDR_REQUEST_ID, "")
        headers = {p.HDR_REQUEST_ID: request_id, p.HDR_SOURCE: self.name,
                   p.HDR_INSTANCE_ID: STUB_INSTANCE}
        refused = self._refuse(msg.data, request_id)
        if refused is not None:  # as the real agent would: its input schema still holds
            await self.nc.publish(msg.reply, refused.to_json(), headers={
                **headers, p.HDR_STATUS: "error"})
            return
        answer = self.next_answer()
        if (msg.headers or {}).get(p.HDR_STREAM) == "true" and request_id:
            await self._stream(answer, request_id, headers)
            return
        body, status = self._body(answer, request_id)
        await self.nc.publish(msg.reply, body, headers={**headers, p.HDR_STATUS: status})

    async def _stream(self, answer: Answer | None, request_id: str, headers: dict[str, str]) -> None:
        """A streaming caller gets the output's items as chunks (a list), or one error."""
        subject = p.stream_subject(request_id)
        if answer is None or answer.error is not None:
            body, _ = self._body(answer, request_id)
            await self.nc.publish(subject, body, headers={
                **headers, p.HDR_STATUS: "error", p.HDR_STREAM_END: "true"})
            return
        chunks = answer.output if isinstance(answer.output, list) else [answer.output]
        for seq, chunk in enumerate(chunks):
            await self.nc.publish(subject, orjson.dumps(chunk), headers={
                **headers, p.HDR_STREAM_SEQ: str(seq), p.HDR_STREAM_END: "false"})
        await self.nc.publish(subject, b"", headers={
            **headers, p.HDR_STREAM_SEQ: str(len(chunks)), p.HDR_STREAM_END: "true"})

    def _refuse(self, data: bytes, request_id: str) -> p.MeshError | None:
        """invalid_input for a payload the stubbed agent would refuse (no answer is used)."""
        try:
            payload = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError as exc:
            errors = [{"path": "", "message": f"not JSON: {exc}"}]
        else:
            if self.input_schema is None or self.input_schema.validator.is_valid(payload):
                return None
            errors = self.input_schema.errors(payload)
        first = errors[0]
        return p.MeshError(p.INVALID_INPUT, f"input does not match the schema: "
                           f"{first['path'] or '/'}: {first['message']} (stub '{self.name}')",
                           agent=self.name, request_id=request_id, details={"errors": errors})

    def _body(self, answer: Answer | None, request_id: str) -> tuple[bytes, str]:
        if answer is not None and answer.error is None:
            return orjson.dumps(answer.output), "ok"
        if answer is None:
            error = p.MeshError(p.HANDLER_ERROR, f"stub '{self.name}' ran out of answers "
                                f"({len(self.stubbed.answers)} given, this is call {self.calls})",
                                agent=self.name, request_id=request_id)
        else:
            assert answer.error is not None
            error = p.MeshError(answer.error.code, answer.error.message, agent=self.name,
                                request_id=request_id, details=answer.error.details)
        return error.to_json(), "error"


def stub_for(nc: Client, mesh: Mesh, name: str, stubbed: Stubbed) -> Stub:
    """A stub with what the agent (this file's or an external one) offers and accepts."""
    if name in mesh.endpoints:
        endpoint = mesh.endpoints[name]
        return Stub(nc, name, stubbed, endpoint.capabilities, endpoint.input)
    external = mesh.external[name]
    return Stub(nc, name, stubbed, tuple(external.spec.capabilities), external.input)

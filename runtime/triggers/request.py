"""One message, one request: request/reply on the target's subject (so admission applies as
for any call), with the request id and run key the message's coordinates give."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import nats.errors
from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.core.events import HDR_TRACEPARENT
from runtime.load.triggercheck import TriggerDef
from runtime.nats.caller import ANSWER_GRACE
from runtime.serve.failures import FailureLog
from runtime.triggers.message import HDR_RUN_KEY, TriggerMessage, request_body


class Firing:
    """Sends a trigger's messages to its target and counts what came of them."""

    def __init__(self, nc: Client, trigger: TriggerDef):
        self.nc = nc
        self.trigger = trigger
        self.subject = p.agent_subject(trigger.target)
        self.logger = logging.getLogger(f"mesh-runtime.agent.{trigger.target}")
        self.failures = FailureLog(self.logger)
        self.counts: Counter[str] = Counter()  # "ok", or an error code: what came of each message

    async def fire(self, message: TriggerMessage, request_id: str,
                   run_key: str | None = None) -> p.MeshError | None:
        """Send one request; None when it succeeded, else its error (logged, rate-limited)."""
        error = await self._request(message, request_id, run_key)
        if error is None:
            self.counts["ok"] += 1
            return None
        error.request_id = error.request_id or request_id
        if still_running(error):  # no outcome yet: the stream trigger asks again
            return error
        self.counts[error.code if error.code in _CODES else "other"] += 1
        self.failures.failed(error, error)
        return error

    async def _request(self, message: TriggerMessage, request_id: str,
                       run_key: str | None) -> p.MeshError | None:
        try:
            body = request_body(self.trigger, message)
        except p.MeshError as exc:
            return exc
        timeout = self.trigger.timeout
        # No X-Mesh-Timeout: the budget would be the target's own timeout, which applies anyway.
        headers = {p.HDR_REQUEST_ID: request_id}
        if run_key is not None:
            headers[HDR_RUN_KEY] = run_key
        traceparent = message.headers.get(HDR_TRACEPARENT)
        if traceparent is not None and len(traceparent) <= 128:
            headers[HDR_TRACEPARENT] = traceparent
        try:
            reply = await self.nc.request(self.subject, body, timeout=timeout + ANSWER_GRACE,
                                          headers=headers)
        except nats.errors.NoRespondersError:
            return p.MeshError(p.NOT_FOUND, f"no agent named '{self.trigger.target}' is serving",
                               agent=self.trigger.target)
        except nats.errors.TimeoutError:
            return p.MeshError(p.TIMEOUT, f"'{self.trigger.target}' did not answer within "
                               f"{timeout:g}s", agent=self.trigger.target)
        except Exception as exc:  # the connection is going: the message is not done
            return p.MeshError(p.HANDLER_ERROR, f"could not send the request: "
                               f"{type(exc).__name__}: {exc}", agent=self.trigger.target)
        if (reply.headers or {}).get(p.HDR_STATUS) == "error":
            return p.MeshError.from_body(reply.data, agent=self.trigger.target,
                                         request_id=request_id)
        return None

    def snapshot(self) -> dict[str, Any]:
        return {"trigger": self.trigger.describe(), **self.counts}


def still_running(error: p.MeshError) -> bool:
    """A durable pipeline's answer to a second start of a run key whose run has not ended."""
    return error.code == p.TIMEOUT and error.details.get("status") == "running"


_CODES = frozenset({p.INVALID_INPUT, p.INVALID_OUTPUT, p.HANDLER_ERROR, p.TIMEOUT, p.NOT_FOUND,
                    p.OVERLOADED, p.EXPIRED, p.STEP_FAILED, p.INVOCATION_MISMATCH})

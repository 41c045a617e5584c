"""What a handler's optional second parameter receives."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from runtime.core.bus import MAX_ANSWERS, Bus, Caller, SharedState

__all__ = ["Bus", "Caller", "Context"]


@dataclass(slots=True)  # not frozen: a frozen dataclass is slower to build, per request
class Context:
    """Request id, agent name, static `config`, a logger, the deadline, `call()`,
    `broadcast()`, `emit()`, the shared `state`, and the caller's `idempotency_key` (or None)."""

    request_id: str
    agent: str
    config: Mapping[str, Any]
    logger: logging.Logger
    deadline: float  # time.monotonic() value after which the caller has stopped waiting
    _caller: Bus
    idempotency_key: str | None = None  # `<run id>/<step path>` when a durable run calls

    def remaining(self) -> float:
        """Seconds left before the deadline (never below zero)."""
        return max(0.0, self.deadline - time.monotonic())

    @property
    def run_id(self) -> str:
        """The id of the pipeline run this request belongs to (its request id)."""
        return self.request_id

    async def progress(self, fraction: float | None, message: str = "") -> None:
        """Tell the run how far this step is (0.0 to 1.0, or None) with a short message: a
        `step_progress` event, shown by `mesh-runtime runs watch`."""
        if fraction is not None and not isinstance(fraction, int | float):
            raise TypeError(f"ctx.progress takes a number from 0 to 1 (or None), "
                            f"not {type(fraction).__name__}")
        await self._caller.progress(self.request_id, self.agent, fraction, str(message))

    async def call(self, name: str | None = None, payload: Any = None, *,
                   capability: str | None = None, timeout: float | None = None,
                   wait: bool = True) -> Any:
        """Call another agent by name, or any agent offering `capability`, within this
        request's deadline and with its id. `wait=False` starts a pipeline as a run of its
        own and returns its run id at once (see `mesh-runtime runs`)."""
        if (name is None) == (capability is None):
            raise ValueError("ctx.call needs an agent name or capability=..., not both")
        if not wait:
            if name is None:
                raise ValueError("ctx.call(wait=False) starts a pipeline by name, not a capability")
            return await self._caller.start_run(name, _plain(payload), self._budget(timeout))
        budget = self._budget(timeout)
        if capability is not None:
            return await self._caller(capability, _plain(payload), budget, self.request_id,
                                      capability=True)
        assert name is not None
        return await self._caller(name, _plain(payload), budget, self.request_id)

    async def broadcast(self, capability: str, payload: Any = None, *, within: float = 1.0,
                        max_answers: int = MAX_ANSWERS) -> list[dict[str, Any]]:
        """Ask every agent offering `capability`; their answers (and errors), in arrival order.
        Past `max_answers` answers (or 16 MB of them) it stops; a last entry says so."""
        return await self._caller.broadcast(capability, _plain(payload), self._budget(within),
                                            self.request_id, max_answers=max_answers)

    async def emit(self, type: str, data: Any = None) -> None:
        """Publish an event of this agent (a CloudEvent of `type` on
        mesh.agent.<agent>.events); triggers `event: {from: <agent>, type: ...}` take it."""
        await self._caller.emit(self.agent, type, _plain(data))

    @property
    def state(self) -> SharedState:
        """The mesh's shared state: `get`, `put`, `delete`, `update(key, fn)`, `keys`."""
        return self._caller.state

    def _budget(self, timeout: float | None) -> float:
        if timeout is None:
            return self.remaining()
        if timeout != timeout:  # NaN: it would reach the event loop's timers
            raise ValueError("a timeout is a number of seconds, not NaN")
        return max(0.0, min(timeout, self.remaining()))


def _plain(payload: Any) -> Any:
    if isinstance(payload, BaseModel):
        return payload.model_dump(mode="json")
    return {} if payload is None else payload

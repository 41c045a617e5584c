"""What a handler's optional second parameter receives."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

# call(name, payload, timeout_seconds, request_id) -> the agent's output (raises MeshError)
Caller = Callable[[str, Any, float, str], Awaitable[Any]]


@dataclass(slots=True)  # not frozen: a frozen dataclass is slower to build, per request
class Context:
    """Request id, agent name, static `config`, a logger, the deadline, and `call()`."""

    request_id: str
    agent: str
    config: Mapping[str, Any]
    logger: logging.Logger
    deadline: float  # time.monotonic() value after which the caller has stopped waiting
    _caller: Caller

    def remaining(self) -> float:
        """Seconds left before the deadline (never below zero)."""
        return max(0.0, self.deadline - time.monotonic())

    async def call(self, name: str, payload: Any = None, *, timeout: float | None = None) -> Any:
        """Call another agent on the mesh, within this request's deadline, with its id."""
        budget = self.remaining() if timeout is None else min(timeout, self.remaining())
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
        return await self._caller(name, {} if payload is None else payload, budget, self.request_id)

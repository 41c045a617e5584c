"""What handlers and pipelines reach the mesh through: calls (by name or capability),
broadcasts and the shared state. Implemented over NATS in runtime.nats.bus; declared here,
at the bottom, so `ctx` and the pipeline engine depend on the shape, not on NATS."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

# NATS KV key rules (as nats-py checks them): these characters, not starting or ending in '.'.
_KEY = re.compile(r"[-/_=.a-zA-Z0-9]+")  # fullmatch: a `$` would match before a final newline
MAX_KEY_LENGTH = 1024
MAX_ANSWERS = 1_000  # a broadcast's answers kept by default: anyone on the bus may answer

Updater = Callable[[Any], Any]  # the decoded value (or None) -> the new value, maybe awaitable


class Caller(Protocol):
    """`await call(name, payload, timeout_seconds, request_id)`: the output, or MeshError.

    With `capability=True`, `name` is a capability and any agent offering it answers."""

    def __call__(self, name: str, payload: Any, timeout: float, request_id: str, /, *,
                 capability: bool = False) -> Awaitable[Any]: ...


class SharedState(Protocol):
    """The `mesh-context` KV bucket, values as JSON."""

    async def get(self, key: str) -> Any: ...
    async def put(self, key: str, value: Any) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def update(self, key: str, fn: Updater) -> Any: ...
    async def keys(self) -> list[str]: ...


class Bus(Caller, Protocol):
    """A Caller that can also broadcast, reach the shared state and emit events."""

    async def broadcast(self, capability: str, payload: Any, within: float,
                        request_id: str, *,
                        max_answers: int = MAX_ANSWERS) -> list[dict[str, Any]]: ...

    @property
    def state(self) -> SharedState: ...

    async def emit(self, source: str, event_type: str, data: Any) -> None: ...

    async def start_run(self, name: str, payload: Any, timeout: float) -> str:
        """Start the pipeline `name` without waiting for it (X-Mesh-Async); its run id."""
        ...

    async def progress(self, run_id: str, agent: str, fraction: float | None,
                       message: str) -> None:
        """Record a `step_progress` event of the run `run_id` (never raises)."""
        ...


def state_key_problem(key: object) -> str | None:
    """Why `key` cannot be a key of the shared state, or None when it can."""
    if not isinstance(key, str):
        return f"a state key is a string, not {type(key).__name__}"
    if not key:
        return "a state key cannot be empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"state key is {len(key)} characters long; at most {MAX_KEY_LENGTH}"
    if key[0] == "." or key[-1] == "." or not _KEY.fullmatch(key):
        shown = key if len(key) <= 60 else key[:57] + "..."
        return (f"invalid state key {shown!r}: use letters, digits and - / _ = . "
                "(not starting or ending with '.')")
    if ".." in key:  # an empty subject token: the server would refuse it
        return f"invalid state key {key!r}: '..' makes an empty segment"
    return None

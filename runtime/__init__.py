"""mesh-runtime: a declarative agent mesh on NATS.

What handlers import is the public API, kept here at the package root so that
regrouping the package never breaks a user's code:

    from runtime import Context, MeshError, INVALID_INPUT
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.core.context import Context
    from runtime.core.protocol import (
        CANCELLED,
        EXPIRED,
        HANDLER_ERROR,
        INVALID_INPUT,
        INVALID_OUTPUT,
        INVOCATION_MISMATCH,
        NOT_FOUND,
        OVERLOADED,
        STEP_FAILED,
        TIMEOUT,
        MeshError,
    )
    from runtime.tracing.hop import current_trace_id

__all__ = [
    "CANCELLED",
    "EXPIRED",
    "HANDLER_ERROR",
    "INVALID_INPUT",
    "INVALID_OUTPUT",
    "INVOCATION_MISMATCH",
    "NOT_FOUND",
    "OVERLOADED",
    "STEP_FAILED",
    "TIMEOUT",
    "Context",
    "MeshError",
    "current_trace_id",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: `mesh-runtime call` should not pay for pydantic it never needs.
    if name == "Context":
        from runtime.core.context import Context

        return Context
    if name == "current_trace_id":  # the trace of the request being served (docs/tracing.md)
        from runtime.tracing.hop import current_trace_id

        return current_trace_id
    if name in __all__:
        from runtime.core import protocol

        return getattr(protocol, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")

"""The idempotency key of the call a durable run's step is making: `<run id>/<step path>`.

A run's step sets it around its call; the caller puts it in `X-Mesh-Idempotency-Key`; the
callee's handler reads it as `ctx.idempotency_key`. A ContextVar, so concurrent steps
(parallel branches, for_each items) each carry their own, and no handler passes it by hand.
"""

from __future__ import annotations

from contextvars import ContextVar

IDEMPOTENCY_KEY: ContextVar[str | None] = ContextVar("mesh_idempotency_key", default=None)


def idempotency_key(run_id: str, step_path: str) -> str:
    """`run-1/charge`, `run-1/per_section[3]`: the same on every attempt and after a resume."""
    return f"{run_id}/{step_path}"

"""The orchestration benchmark's agents: each returns its message unchanged."""

from typing import Any


async def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return {"message": payload["message"]}

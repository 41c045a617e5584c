"""The echo benchmark's handler."""

from typing import Any


async def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return payload

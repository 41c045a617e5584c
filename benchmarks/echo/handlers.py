"""The echo benchmark's handlers."""

import asyncio
from typing import Any

IO_SECONDS = 0.001  # the simulated I/O (a database or model call)


async def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


async def echo_io(payload: dict[str, Any]) -> dict[str, Any]:
    """The echo after 1 ms of simulated I/O."""
    await asyncio.sleep(IO_SECONDS)
    return payload

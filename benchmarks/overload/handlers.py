"""The overload benchmark's agent: it awaits simulated I/O (50 ms unless told otherwise)."""

import asyncio


async def slow(payload: dict) -> dict:
    await asyncio.sleep(payload.get("seconds", 0.05))
    return {"ok": True}

"""The pipeline benchmark's three steps: each returns its message unchanged."""

from typing import Any


async def p1(payload: dict[str, Any]) -> dict[str, Any]:
    return {"message": payload["message"]}


async def p2(payload: dict[str, Any]) -> dict[str, Any]:
    return {"message": payload["message"]}


async def p3(payload: dict[str, Any]) -> dict[str, Any]:
    return {"message": payload["message"]}

"""Handlers of the trigger benchmark."""

import time


async def echo(payload):
    return payload


async def tick(payload, ctx):
    await ctx.emit("tick", {"at": payload["at"], "got": time.time()})
    return {}

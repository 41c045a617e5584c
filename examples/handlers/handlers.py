"""One handler per kind mesh-runtime supports; mesh.yaml beside this file serves them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, Field

from runtime import Context


# kinds.sync: a plain function. mesh-runtime runs it in a thread pool, so blocking
# work (file I/O, a C library, time.sleep) never stalls the other requests.
def shout(payload: dict[str, Any]) -> dict[str, Any]:
    on_pool = threading.current_thread().name.startswith("mesh-handler")
    return {"text": payload["text"].upper(), "thread_pool": on_pool}


# kinds.async: a coroutine, awaited on the event loop (await I/O, don't block).
async def count_words(payload: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0)
    text = payload["text"]
    return {"words": len(text.split()), "chars": len(text)}


# kinds.pydantic: the payload arrives as a model and the returned model is dumped to
# JSON. mesh.yaml gives no input:/output:, so both schemas are derived from these models
# (and published in the registry like any other schema).
class Greeting(BaseModel):
    name: str = Field(min_length=1)
    times: int = Field(default=1, ge=1, le=3)


class Greeted(BaseModel):
    message: str


async def greet(req: Greeting) -> Greeted:
    return Greeted(message=" ".join([f"Hello, {req.name}!"] * req.times))


# kinds.stream: an async generator is a streaming agent; each yield is one chunk,
# checked against the agent's `output` schema.
async def countdown(payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    for n in range(payload["start"], 0, -1):
        yield {"n": n}
        if n > 1:
            await asyncio.sleep(payload["delay"])


# kinds.context: a second parameter receives the request's context: its id, the agent's
# name, `config:` from mesh.yaml, a logger, the deadline, and call() to reach other agents.
async def label_length(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    delegate = ctx.config["delegate"]
    ctx.logger.info("request %s: asking %s for a word count", ctx.request_id, delegate)
    counted = await ctx.call(delegate, {"text": payload["text"]})  # within this request's deadline
    label = "long" if counted["words"] > ctx.config["long_after"] else "short"
    return {"agent": ctx.agent, "delegate": delegate, "words": counted["words"], "label": label,
            "within_deadline": ctx.remaining() > 0}

"""The limit: a hand-written nats-py echo responder (JSON in, JSON out, no mesh headers).

Usage: python benchmarks/peers/raw_responder.py NATS_URL [AGENT_NAME]   (default bench.raw)
"""

from __future__ import annotations

import asyncio
import json
import sys

import nats
from nats.aio.msg import Msg


async def serve(url: str, name: str) -> None:
    nc = await nats.connect(url)

    async def echo(msg: Msg) -> None:
        await msg.respond(json.dumps(json.loads(msg.data)).encode())

    await nc.subscribe(f"mesh.agent.{name}", queue=f"q.{name}", cb=echo)
    await nc.flush()
    print(f"ready: {name} on {url}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "bench.raw"))

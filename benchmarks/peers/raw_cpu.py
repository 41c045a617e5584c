"""A hand-written nats-py responder doing the CPU-bound work of benchmarks/workers/handlers.py.

Usage: python benchmarks/peers/raw_cpu.py NATS_URL [AGENT_NAME] (default bench.raw-cpu).
The work runs inside the subscription callback, as a hand-written responder would do it:
one process, one core at most.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import nats
from nats.aio.msg import Msg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workers"))
from handlers import burn


async def serve(url: str, name: str) -> None:
    nc = await nats.connect(url)

    async def respond(msg: Msg) -> None:
        await msg.respond(json.dumps(burn(json.loads(msg.data))).encode())

    await nc.subscribe(f"mesh.agent.{name}", queue=f"q.{name}", cb=respond)
    await nc.flush()
    print(f"ready: {name} on {url}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "bench.raw-cpu"))

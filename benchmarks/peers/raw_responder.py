"""The limit: a hand-written nats-py echo responder (JSON in, JSON out, no mesh headers).

Usage: python benchmarks/peers/raw_responder.py NATS_URL [AGENT_NAME] [--io]
(default bench.raw). With --io it also serves AGENT_NAME-io, an echo that first awaits
1 ms of simulated I/O inside the subscription callback, the way a hand-written responder
does: nats-py runs a subscription's callbacks one at a time, so it serves one request at
a time.
"""

from __future__ import annotations

import asyncio
import json
import sys

import nats
from nats.aio.msg import Msg

IO_SECONDS = 0.001  # the simulated I/O (a database or model call)


async def serve(url: str, name: str, io: bool) -> None:
    nc = await nats.connect(url)

    async def echo(msg: Msg) -> None:
        await msg.respond(json.dumps(json.loads(msg.data)).encode())

    async def echo_io(msg: Msg) -> None:
        await asyncio.sleep(IO_SECONDS)
        await msg.respond(json.dumps(json.loads(msg.data)).encode())

    await nc.subscribe(f"mesh.agent.{name}", queue=f"q.{name}", cb=echo)
    if io:
        await nc.subscribe(f"mesh.agent.{name}-io", queue=f"q.{name}-io", cb=echo_io)
    await nc.flush()
    print(f"ready: {name}{' and ' + name + '-io' if io else ''} on {url}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(serve(args[0], args[1] if len(args) > 1 else "bench.raw", "--io" in flags))

"""The raw peer of benchmarks/triggers.py: a nats-py pull consumer that calls an agent for
each message and acks it on success, keeping up to CONCURRENCY requests in flight (the same
sliding window a trigger keeps, so the figure is the limit, not a straw man).

    python raw_pull_consumer.py URL STREAM SUBJECT TARGET [CONCURRENCY]
"""

from __future__ import annotations

import asyncio
import sys

import nats
from nats.js import api


async def main(url: str, stream: str, subject: str, target: str, concurrency: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    durable = "raw-bench"
    await js.add_consumer(stream, api.ConsumerConfig(
        durable_name=durable, ack_policy=api.AckPolicy.EXPLICIT, filter_subject=subject,
        deliver_policy=api.DeliverPolicy.NEW, ack_wait=30, max_ack_pending=1000))
    pull = await js.pull_subscribe_bind(durable=durable, stream=stream)
    slots = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()

    async def handle(msg: nats.aio.msg.Msg) -> None:
        try:
            reply = await nc.request(f"mesh.agent.{target}", msg.data, timeout=30)
            if (reply.headers or {}).get("X-Mesh-Status") == "error":
                await msg.nak()
            else:
                await msg.ack()
        except Exception:
            await msg.nak()
        finally:
            slots.release()

    print("ready", flush=True)
    while True:
        await slots.acquire()
        free = 1
        while not slots.locked() and free < 256:
            await slots.acquire()
            free += 1
        try:
            msgs = await pull.fetch(free, timeout=1)
        except TimeoutError:
            msgs = []
        for _ in range(free - len(msgs)):
            slots.release()
        for msg in msgs:
            task = asyncio.get_running_loop().create_task(handle(msg))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


if __name__ == "__main__":
    url, stream, subject, target = sys.argv[1:5]
    concurrency = int(sys.argv[5]) if len(sys.argv) > 5 else 64
    asyncio.run(main(url, stream, subject, target, concurrency))

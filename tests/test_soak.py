"""A bounded soak: good and hostile traffic mixed against one `up`, for a few seconds.

At the end every good request was answered correctly, `up` still serves and its catalog is
intact. The hostile side is what an attacker with plain NATS access could send: oversized
bodies, malformed JSON, hostile headers and request ids (raw protocol too), `$` reply
subjects, handlers that raise anything, nesting and numbers past the limits, malformed
X-Mesh-Timeout budgets, and floods past a slow agent's queue. And through handlers and
pipelines (section 12): names, capabilities and state keys from the payload that are no
subject, a plain client in a queue group answering with a huge error, and broadcasts
flooded by a hostile responder.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.core.protocol import MeshError
from runtime.nats.caller import call_agent
from runtime.nats.client import catalog
from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, write_mesh
from tests.raw_nats import RawNats

SOAK_SECONDS = 8.0
GOOD_WORKERS = 8
HOSTILE_WORKERS = 6
BIG_ACTIONS = 4  # near-max_payload bodies, floods (nats-py takes ~100 ms of CPU per MB): one worker
BIG_PACE = 1.0  # sends them, paced, so the soak tests hardening, not megabytes per second

HANDLERS = '''
    import asyncio

    RAISED = [lambda: SystemExit(1), lambda: KeyboardInterrupt(), lambda: GeneratorExit(),
              lambda: asyncio.CancelledError(), lambda: ValueError("bad\\nline"),
              lambda: RecursionError()]

    async def echo(payload):
        return payload

    def raiser(payload):
        raise RAISED[payload.get("k", 0) % len(RAISED)]()

    async def async_raiser(payload):
        raise RAISED[payload.get("k", 0) % len(RAISED)]()

    async def count(payload):
        for i in range(payload["n"]):
            yield {"i": i}

    async def slow(payload):
        await asyncio.sleep(0.2)
        return {"slept": True}

    async def router(payload, ctx):
        return await ctx.call(payload["agent"], {})

    async def stater(payload, ctx):
        await ctx.state.put(payload["key"], 1)
        return {}

    async def caster(payload, ctx):
        answers = await ctx.broadcast(payload["capability"], {}, within=0.5)
        return {"count": len(answers)}
'''

MESH = """
    version: 1
    name: soak
    defaults: {timeout: 5s}
    agents:
      s.echo:
        handler: {mod}:echo
        input: {type: object, properties: {n: {type: integer}, text: {type: string}},
                required: [n]}
      s.raw-echo:
        handler: {mod}:echo
      s.raise:
        handler: {mod}:raiser
      s.araise:
        handler: {mod}:async_raiser
      s.count:
        handler: {mod}:count
        input: {type: object, properties: {n: {type: integer, maximum: 20}}, required: [n]}
      s.slow:
        handler: {mod}:slow
        concurrency: 2
        queue: 4
      s.router:
        handler: {mod}:router
      s.stater:
        handler: {mod}:stater
      s.caster:
        handler: {mod}:caster
    pipelines:
      s.setter:
        steps:
          - id: put
            set_state: {key: "${{ input.key }}", value: 1}
"""
NAMES = ["s.echo", "s.raw-echo", "s.raise", "s.araise", "s.count", "s.slow", "s.router",
         "s.stater", "s.caster", "s.setter"]
BAD_NAMES = ["a b", "s.echo\n", "a\r\nPUB injected.proof 2", "a..b", "a.*", ">", "$KV.x",
             "x" * 5000, "a\x00b", ""]
BAD_KEYS = ["x\n", "x y", "a.*", ".x", "a..b", "x" * 2000, "$x", "k\r\nPUB injected.proof 2"]


async def good_call(nc: Client, rng: random.Random) -> bool:
    n = rng.randrange(10**6)
    if rng.random() < 0.2:  # a stream of a few chunks, in order, then its end
        chunks = await _stream(nc, "s.count", {"n": n % 5 + 1})
        return chunks == [{"i": i} for i in range(n % 5 + 1)]
    payload = {"n": n, "text": uuid.uuid4().hex}
    return await call_agent(nc, "s.echo", payload, 5) == payload


async def _stream(nc: Client, name: str, payload: Any) -> list[Any]:
    request_id = uuid.uuid4().hex
    sub = await nc.subscribe(p.stream_subject(request_id))
    try:
        await nc.publish(p.agent_subject(name), json.dumps(payload).encode(),
                         headers={p.HDR_REQUEST_ID: request_id, p.HDR_STREAM: "true"})
        chunks = []
        while True:
            msg = await sub.next_msg(5)
            assert msg.headers is not None and msg.headers.get(p.HDR_STATUS) != "error"
            if msg.headers.get(p.HDR_STREAM_END) == "true":
                return chunks
            chunks.append(json.loads(msg.data))
    finally:
        await sub.unsubscribe()


def hostile_actions(nc: Client, url: str) -> list[Callable[[random.Random], Coroutine[Any, Any, None]]]:
    limit = nc.max_payload

    async def fire(name: str, body: bytes, headers: dict[str, str] | None = None,
                   reply: str = "") -> None:
        await nc.publish(p.agent_subject(name), body, reply=reply or nc.new_inbox(),
                         headers=headers)

    async def oversized(rng: random.Random) -> None:
        await fire("s.raw-echo", json.dumps({"x": "y" * (limit - 40)}).encode())

    async def huge_invalid(rng: random.Random) -> None:
        await fire("s.echo", json.dumps({"n": "z" * (limit // 2)}).encode())

    async def malformed(rng: random.Random) -> None:
        await fire(rng.choice(NAMES), rng.choice([b"{", b"\xff\xfe", b"[1,]", b"NaN", b'"\\ud800"']))

    async def bad_id(rng: random.Random) -> None:
        headers = {p.HDR_REQUEST_ID: rng.choice(["a b", "a  b", "x" * 129, "*", ">", "a.b"])}
        if rng.random() < 0.5:
            headers[p.HDR_STREAM] = "true"
        await fire(rng.choice(["s.count", "s.echo"]), b'{"n": 1}', headers)

    async def dollar_reply(rng: random.Random) -> None:
        reply = rng.choice(["$KV.mesh-catalog.catalog", "$JS.API.STREAM.DELETE.KV_mesh-registry",
                            "$KV.mesh-registry.s.echo", "$SYS.REQ.SERVER.PING"])
        await fire("s.raw-echo", b"[]", reply=reply)

    async def raising(rng: random.Random) -> None:
        await fire(rng.choice(["s.raise", "s.araise"]), json.dumps({"k": rng.randrange(6)}).encode())

    async def limits(rng: random.Random) -> None:
        depth = rng.choice([255, 2000])
        await fire("s.raw-echo", rng.choice([b"[" * depth + b"]" * depth,
                                              b'{"n": %s}' % (b"9" * 5000)]))

    async def bad_budget(rng: random.Random) -> None:
        budget = rng.choice(["abc", "-1", "0", "1e309", "nan", "9" * 40, ""])
        await fire("s.echo", b'{"n": 1}', {p.HDR_TIMEOUT: budget})

    async def flood(rng: random.Random) -> None:
        await asyncio.gather(*(fire("s.slow", b"{}") for _ in range(20)))

    async def raw_newline(rng: random.Random) -> None:
        raw = await asyncio.to_thread(RawNats, url)
        try:
            await asyncio.to_thread(raw.hpub, p.agent_subject(rng.choice(["s.echo", "s.count"])),
                                    "raw.inbox", b"X-Mesh-Request-Id: a\nb\r\nX-Mesh-Stream: true",
                                    b'{"n": 1}')
            await asyncio.to_thread(raw.flush)
        finally:
            raw.close()

    async def bad_name(rng: random.Random) -> None:
        await fire("s.router", json.dumps({"agent": rng.choice(BAD_NAMES)}).encode())

    async def bad_key(rng: random.Random) -> None:
        await fire(rng.choice(["s.stater", "s.setter"]),
                   json.dumps({"key": rng.choice(BAD_KEYS)}).encode())

    async def bad_capability(rng: random.Random) -> None:
        await fire("s.caster", json.dumps({"capability": rng.choice(BAD_NAMES)}).encode())

    async def huge_error_answer(rng: random.Random) -> None:  # answered by hostile_answers
        await fire("s.router", b'{"agent": "s.ghost"}')

    async def broadcast_flood(rng: random.Random) -> None:  # answered by hostile_answers
        await fire("s.caster", b'{"capability": "s.flood"}')

    return [malformed, bad_id, dollar_reply, raising, limits, bad_budget, flood, raw_newline,
            bad_name, bad_key, bad_capability,
            oversized, huge_invalid, huge_error_answer, broadcast_flood]  # the big ones last


async def hostile_answers(nc: Client) -> None:
    """A plain client that answers calls of s.ghost with a near-max_payload error (every
    field huge in turn), and every broadcast to s.flood 1,500 times."""
    room = nc.max_payload - 4000
    fields = iter(["code", "agent", "message", "request_id"] * 1000)

    async def ghost(msg: Any) -> None:
        error = {"code": "c", "message": "m", "agent": "a", "request_id": "r", "details": {}}
        error[next(fields)] = "z" * room
        await nc.publish(msg.reply, json.dumps(error).encode(),
                         headers={p.HDR_STATUS: "error", p.HDR_SOURCE: "s.ghost"})

    async def flood(msg: Any) -> None:
        for _ in range(1_500):
            await nc.publish(msg.reply, b'{"vote": 1}', headers={p.HDR_STATUS: "ok"})

    await nc.subscribe(p.agent_subject("s.ghost"), queue=p.queue_group("s.ghost"), cb=ghost)
    await nc.subscribe(p.broadcast_subject("s.flood"), cb=flood)
    await nc.flush()


def record_actions(nc: Client) -> list[Callable[[random.Random], Coroutine[Any, Any, None]]]:
    """Hostile records other clients write (malformed catalog entries, junk and forged
    instance records) and floods of $SRV requests (DESIGN section 12)."""
    junk_entries = [{"name": "junk.count", "x-instances": 5}, {"name": ["a"]}, 7,
                    {"name": "junk.ids", "x-instances": [uuid.uuid4().hex[:12]] * 300},
                    {"name": "junk.dead", "x-instances": ["deadbeef0001"]}]
    forged = [1e12, "Infinity", "soon", None, -1]

    async def hostile_entry(rng: random.Random) -> None:
        kv = await nc.jetstream().key_value(p.CATALOG_BUCKET)
        current = json.loads((await kv.get(p.CATALOG_KEY)).value or b"[]")
        await kv.put(p.CATALOG_KEY, json.dumps([*current, rng.choice(junk_entries)]).encode())

    async def junk_instance(rng: random.Random) -> None:
        kv = await nc.jetstream().key_value(p.INSTANCES_BUCKET)
        record = {"instance_id": "x", "heartbeat": rng.choice(forged), "interval_s": 1e9,
                  "agents": ["s.echo"] * rng.randrange(1000)}
        await kv.put(f"junk{rng.randrange(10**6)}", rng.choice(
            [json.dumps(record).encode(), b"[" * 5000, b"\xff"]))

    async def srv_flood(rng: random.Random) -> None:
        for _ in range(50):
            await nc.publish(rng.choice(["$SRV.STATS", "$SRV.INFO", "$SRV.PING.soak"]), b"",
                             reply=nc.new_inbox())

    return [hostile_entry, junk_instance, srv_flood]


async def test_soak_of_good_and_hostile_traffic(tmp_path: Path) -> None:
    path, _ = write_mesh(tmp_path, MESH, HANDLERS)
    with NatsServer() as server, UpProcess(path, server.url, "--no-reload") as up:
        good_nc, bad_nc = await nats.connect(server.url), await nats.connect(server.url)
        answering = await nats.connect(server.url)
        try:
            await hostile_answers(answering)
            results = await _run(good_nc, bad_nc, server.url)
            # After the storm: still serving, still listed, still alive.
            assert await call_agent(good_nc, "s.echo", {"n": 7}, 5) == {"n": 7}
            entries = {e["name"]: e for e in await catalog(good_nc) or []}
            registry = await good_nc.jetstream().key_value(p.REGISTRY_BUCKET)
            cards = [json.loads((await registry.get(n)).value)["name"] for n in NAMES]
        finally:
            await good_nc.close()
            await bad_nc.close()
            await answering.close()
        assert up.process.poll() is None
    good, wrong, hostile = results
    assert good > 200 and wrong == [], wrong[:5]
    assert hostile > 500
    assert max(len(line) for line in up.raw_lines) < 2_000
    assert "malformed catalog entries written by another client" in up.log
    assert set(NAMES) <= set(entries)  # beside them, the hostile ones, kept as written
    assert all(len(entries[n]["x-instances"]) == 1 for n in NAMES)
    assert set(entries) - set(NAMES) <= {"junk.count", "junk.dead"}
    assert cards == NAMES
    assert "Traceback" not in up.log
    assert "dropped" in up.log
    assert "stopped unexpectedly" not in up.log and "disconnected" not in up.log


async def _run(good_nc: Client, bad_nc: Client, url: str) -> tuple[int, list[Any], int]:
    end = time.monotonic() + SOAK_SECONDS
    counts = {"good": 0, "hostile": 0}
    wrong: list[Any] = []
    actions = [*record_actions(bad_nc), *hostile_actions(bad_nc, url)]  # big ones last

    async def good_worker(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < end:
            try:
                ok = await good_call(good_nc, rng)
            except (MeshError, Exception) as exc:  # any failure of a good request is a defect
                wrong.append(repr(exc))
                continue
            counts["good"] += 1
            if not ok:
                wrong.append("a wrong answer")

    async def hostile_worker(seed: int, choices: list[Any], pause: float) -> None:
        rng = random.Random(seed)
        while time.monotonic() < end:
            await rng.choice(choices)(rng)
            counts["hostile"] += 1
            await asyncio.sleep(pause)

    small, big = actions[:-BIG_ACTIONS], actions[-BIG_ACTIONS:]
    await asyncio.gather(*(good_worker(i) for i in range(GOOD_WORKERS)),
                         *(hostile_worker(100 + i, small, 0.005) for i in range(HOSTILE_WORKERS)),
                         hostile_worker(99, big, BIG_PACE))
    return counts["good"], wrong, counts["hostile"]

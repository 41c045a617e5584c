"""Stopping `up` and its threads: stuck sync handlers starve no other agent, the grace
period bounds a stop, and Ctrl-C in a terminal reaches `up` alone (not its nats-server)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import nats
import orjson

from runtime.core.protocol import HDR_STATUS
from runtime.nats.caller import call_agent
from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, free_port, write_mesh

HANDLERS = """
    import asyncio
    import threading

    NEVER = threading.Event()

    def block(payload, ctx):
        ctx.logger.info("blocking")
        NEVER.wait()

    def quick(payload):
        return {"thread": threading.current_thread().name}

    async def slow(payload):
        await asyncio.sleep(payload["seconds"])
        return {"done": True}
"""

MESH = """
    version: 1
    agents:
      stop.block:
        handler: {mod}:block
        timeout: {timeout}
      stop.quick:
        handler: {mod}:quick
      stop.slow:
        handler: {mod}:slow
"""


def mesh(tmp_path: Path, timeout: str, header: str = "") -> Path:
    path, _ = write_mesh(tmp_path, header + MESH.replace("{timeout}", timeout), HANDLERS)
    return path


async def test_sync_handlers_that_never_return_starve_only_their_agent(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    with UpProcess(mesh(tmp_path, "1s"), fresh_nats.url, "--no-reload", "--grace", "1") as up:
        nc = await nats.connect(fresh_nats.url)
        try:
            inbox = nc.new_inbox()
            replies = await nc.subscribe(inbox)
            for _ in range(70):  # more than a thread pool of 64 could bear
                await nc.publish("mesh.agent.stop.block", b"{}", reply=inbox)
            await asyncio.to_thread(up.wait_for, "ran past its deadline")
            reply = await call_agent(nc, "stop.quick", {}, 3)
            answers = [await replies.next_msg(timeout=5) for _ in range(70)]
        finally:
            await nc.close()
        started = time.monotonic()
        code = await asyncio.to_thread(up.stop, signal.SIGTERM)
    assert reply["thread"].startswith("mesh-handler")
    codes = sorted(orjson.loads(m.data)["code"] for m in answers)
    assert codes == ["overloaded"] * 6 + ["timeout"] * 64  # 64 ran (its concurrency), 6 waited
    assert ("'stop.block': a sync handler ran past its deadline and cannot be stopped: "
            "64 thread(s) stuck, holding 64 of 64 slots") in up.log
    assert code == 0
    assert time.monotonic() - started < 8  # the stuck threads do not hold the exit


async def test_the_grace_period_bounds_a_stop_even_with_a_stuck_thread(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    up = UpProcess(mesh(tmp_path, "60s"), fresh_nats.url, "--no-reload", "--grace", "1s")
    up.wait_for("ready:")
    nc = await nats.connect(fresh_nats.url)
    try:
        stuck = asyncio.ensure_future(call_agent(nc, "stop.block", {}, 10))
        await asyncio.to_thread(up.wait_for, "blocking")
        started = time.monotonic()
        code = await asyncio.to_thread(up.stop, signal.SIGTERM)
        took = time.monotonic() - started
        stuck.cancel()
    finally:
        await nc.close()
    assert code == 0
    assert 1 <= took < 8  # the grace period, not the handler's 60 s timeout
    assert ("stopping: finishing 1 request in flight (at most 1s; Ctrl-C again to stop at "
            "once)") in up.log
    assert "warning: grace period (1s) over: 1 request(s) left unanswered" in up.log
    assert up.lines[-1] == "stopped"


def test_grace_must_be_a_duration(tmp_path: Path) -> None:
    up = UpProcess(mesh(tmp_path, "1s"), None, "--grace", "soon")
    assert up.process.wait(10) == 2
    up.wait_for("argument --grace: invalid duration 'soon': use a number with a unit")


async def test_ctrl_c_reaches_up_alone_and_it_stops_its_server_last(tmp_path: Path) -> None:
    port = free_port()
    header = f"nats: {{embedded: {{port: {port}}}}}\n"
    up = UpProcess(mesh(tmp_path, "5s", "    " + header), None, "--no-reload", new_session=True)
    up.wait_for("ready:")
    url = f"nats://127.0.0.1:{port}"
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        in_flight = asyncio.ensure_future(nc.request(
            "mesh.agent.stop.slow", b'{"seconds": 0.5}', timeout=5))
        await asyncio.sleep(0.1)  # the request reaches the handler before Ctrl-C
        os.killpg(up.process.pid, signal.SIGINT)  # what a terminal does: the whole group
        reply = await in_flight
        code = await asyncio.to_thread(up.process.wait, 20)
    finally:
        await nc.close()
    assert reply.headers is not None and reply.headers[HDR_STATUS] == "ok"
    assert orjson.loads(reply.data) == {"done": True}
    assert code == 0
    assert "reconnect" not in up.log and "disconnected" not in up.log
    assert up.lines[-1] == "stopped"
    with socket.socket() as probe:  # and the server is gone with it
        assert probe.connect_ex(("127.0.0.1", port)) != 0

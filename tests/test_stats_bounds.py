"""What the mesh shows of itself is bounded: STATS and `status` never echo request data, a
flood of $SRV requests costs the flooder, and metric labels come from a bounded set."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from pathlib import Path

import nats

from runtime.core.protocol import MeshError
from runtime.nats.caller import call_agent
from runtime.nats.embedded import NatsServer
from runtime.observe.micro_limits import BURST, BYTES_PER_SECOND
from runtime.serve.stats import CODES
from tests.helpers import UpProcess, cli, free_port, write_mesh

SECRET = "hunter2-the-password"

HANDLERS = """
    from runtime import MeshError

    def echo(payload):
        return payload

    def leak(payload):
        raise ValueError(payload["secret"])

    def coded(payload):
        raise MeshError(payload["code"], "from elsewhere")
"""

MESH = """
    version: 1
    name: stats-bounds
    agents:
      sb.strict:
        handler: {mod}:echo
        input: {type: object, properties: {n: {type: integer}}}
      sb.leak: {handler: "{mod}:leak"}
      sb.coded: {handler: "{mod}:coded"}
      sb.idle: {handler: "{mod}:echo"}
"""


async def _calls(url: str, calls: list[tuple[str, object]]) -> list[str]:
    nc = await nats.connect(url)
    codes = []
    try:
        for name, payload in calls:
            try:
                await call_agent(nc, name, payload, 5)
                codes.append("ok")
            except MeshError as exc:
                codes.append(exc.code)
    finally:
        await nc.close()
    return codes


async def _stats(url: str) -> bytes:
    nc = await nats.connect(url)
    try:
        return (await nc.request("$SRV.STATS.stats-bounds", b"", timeout=5)).data
    finally:
        await nc.close()


def scrape(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return [line for line in response.read().decode().splitlines()
                if line.startswith("mesh_requests_total")]


def test_stats_status_and_metrics_stay_bounded(fresh_nats: NatsServer, tmp_path: Path) -> None:
    url, port = fresh_nats.url, free_port()
    path, _ = write_mesh(tmp_path, MESH, HANDLERS)
    with UpProcess(path, url, "--metrics-port", str(port)) as up:
        # every (name, code) series is there from the start, at 0
        before = scrape(port)
        assert len(before) == 4 * (len(CODES) + 1)
        assert 'mesh_requests_total{code="other",name="sb.idle"} 0.0' in before
        assert 'mesh_requests_total{code="ok",name="sb.idle"} 0.0' in before
        codes = asyncio.run(_calls(url, [("sb.strict", {"n": SECRET}),
                                         ("sb.leak", {"secret": SECRET})]))
        assert codes == ["invalid_input", "handler_error"]
        up.wait_for(SECRET)  # the instance's own log still says what went wrong
        stats = asyncio.run(_stats(url))
        assert SECRET.encode() not in stats
        last = {e["name"]: e["last_error"] for e in json.loads(stats)["endpoints"]}
        assert last["sb_strict"].startswith("invalid_input: ")
        for command in (["status", "--json"], ["status"], ["describe", "sb.leak"]):
            shown = cli(*command, "--nats", url)
            assert shown.returncode == 0 and SECRET not in shown.stdout, shown.stdout
        # 300 distinct codes from elsewhere: one bounded label, not 300 series
        codes = asyncio.run(_calls(url, [("sb.coded", {"code": f"made_up_{i}"})
                                         for i in range(300)]))
        assert set(codes) == {f"made_up_{i}" for i in range(300)}  # the caller sees each
        after = scrape(port)
        assert len(after) == len(before)
        assert 'mesh_requests_total{code="other",name="sb.coded"} 300.0' in after
        up.wait_for("more requests failed with other in the last second")
    # ...and share one log line a second, not a line each
    assert sum("failed: made_up_" in line for line in up.lines) < 30


def _many(count: int) -> str:
    agents = "\n".join(f"      fl.a{i:03d}: {{handler: \"{{mod}}:echo\"}}" for i in range(count))
    return f"    version: 1\n    name: flood\n    agents:\n{agents}\n"


async def _flood(url: str, requests: int) -> tuple[int, int, float, str]:
    """(answers, bytes answered, seconds from the first request to the quiet after the
    last answer, an echo's code meanwhile)."""
    nc = await nats.connect(url)
    got = [0, 0]
    last = [time.monotonic()]

    async def on(msg: object) -> None:
        got[0] += 1
        got[1] += len(msg.data)  # type: ignore[attr-defined]
        last[0] = time.monotonic()

    try:
        inbox = nc.new_inbox()
        await nc.subscribe(inbox, cb=on, pending_bytes_limit=1 << 30)
        began = time.monotonic()
        for _ in range(requests):
            await nc.publish("$SRV.STATS", b"", reply=inbox)
        victim = "ok"
        try:
            await call_agent(nc, "fl.a007", {"x": 1}, 10)
        except MeshError as exc:
            victim = exc.code
        while time.monotonic() - last[0] < 1.0:  # until the answers stop
            await asyncio.sleep(0.1)
        return got[0], got[1], time.monotonic() - began, victim
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def test_a_stats_flood_costs_the_flooder_not_the_agents(fresh_nats: NatsServer,
                                                        tmp_path: Path) -> None:
    path, _ = write_mesh(tmp_path, _many(300), HANDLERS)
    with UpProcess(path, fresh_nats.url):
        one = len(asyncio.run(_stats_of(fresh_nats.url)))
        answers, sent, seconds, victim = asyncio.run(_flood(fresh_nats.url, 3000))
    assert victim == "ok"
    assert one > 50_000  # a big answer: 3,000 of them would be 150 MB
    # never more than the byte budget allows over the time the flood lasted
    assert sent <= BURST + BYTES_PER_SECOND * seconds + one, (answers, sent, seconds)
    assert 0 < answers < 3000


async def _stats_of(url: str) -> bytes:
    nc = await nats.connect(url)
    try:
        return (await nc.request("$SRV.STATS.flood", b"", timeout=5)).data
    finally:
        await nc.close()

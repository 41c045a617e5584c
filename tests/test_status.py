"""`mesh-runtime status`: idle, busy, error and the counters, read over NATS from every `up`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from runtime.core.protocol import MeshError
from runtime.nats.caller import call_agent
from runtime.nats.embedded import NatsServer
from runtime.serve.stats import LAST_ERRORS
from tests.helpers import UpProcess, cli, write_mesh

HANDLERS = """
    import asyncio

    def echo(payload):
        return payload

    def boom(payload):
        raise ValueError("no luck")

    async def slow(payload):
        await asyncio.sleep(3)
        return payload
"""

MESH = """
    version: 1
    name: status-test
    agents:
      st.echo: {handler: "{mod}:echo"}
      st.boom: {handler: "{mod}:boom"}
      st.slow: {handler: "{mod}:slow"}
"""

LAST_HANDLER_ERROR = LAST_ERRORS["handler_error"]  # never the handler's own text


@pytest.fixture(scope="module")
def server() -> Iterator[NatsServer]:
    with NatsServer() as nats_server:
        yield nats_server


@pytest.fixture(scope="module")
def ups(server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Two `up` processes serving the same names, as two machines would."""
    processes = []
    for side in ("a", "b"):
        path, _ = write_mesh(tmp_path_factory.mktemp(side), MESH, HANDLERS)
        processes.append(UpProcess(path, server.url, "--no-reload"))
    try:
        for up in processes:
            up.wait_for("ready:")
        yield
    finally:
        for up in processes:
            up.stop()


async def calls(url: str, name: str, times: int) -> None:
    nc = await nats.connect(url)
    try:
        for _ in range(times):
            with contextlib.suppress(MeshError):
                await call_agent(nc, name, {"n": 1}, 5)
    finally:
        await nc.close()


def status(url: str, *names: str) -> list[dict[str, Any]]:
    result = cli("status", *names, "--nats", url, "--json")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_status_sums_every_instance_and_tells_idle_from_error(server: NatsServer,
                                                              ups: None) -> None:
    asyncio.run(calls(server.url, "st.echo", 4))
    asyncio.run(calls(server.url, "st.boom", 3))
    rows = {r["name"]: r for r in status(server.url)}
    assert list(rows) == ["st.boom", "st.echo", "st.slow"]
    echo, boom = rows["st.echo"], rows["st.boom"]
    assert set(echo) == {"name", "status", "instances", "in_flight", "requests", "errors",
                         "avg_ms", "p99_ms", "last_error"}
    assert (echo["status"], echo["instances"], echo["requests"], echo["errors"]) == (
        "idle", 2, 4, 0)
    assert 0 < echo["avg_ms"] <= echo["p99_ms"] * 2
    assert (boom["status"], boom["requests"], boom["errors"], boom["last_error"]) == (
        "error", 3, 3, LAST_HANDLER_ERROR)
    assert rows["st.slow"]["status"] == "idle"


def test_status_shows_busy_while_a_request_runs(server: NatsServer, ups: None) -> None:
    async def send() -> None:
        nc = await nats.connect(server.url)
        await nc.publish("mesh.agent.st.slow", b"{}")
        await nc.flush()
        await nc.close()

    asyncio.run(send())
    deadline = time.monotonic() + 2.5
    row = status(server.url, "st.slow")[0]
    while row["status"] != "busy" and time.monotonic() < deadline:  # until it has arrived
        row = status(server.url, "st.slow")[0]
    assert (row["status"], row["in_flight"]) == ("busy", 1)


def test_status_table_and_an_unknown_name(server: NatsServer, ups: None) -> None:
    table = cli("status", "st.echo", "--nats", server.url).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "INSTANCES", "IN_FLIGHT", "REQUESTS",
                                "ERRORS", "AVG_MS", "P99_MS", "LAST_ERROR"]
    assert table[1].split()[:3] == ["st.echo", "idle", "2"]
    missing = cli("status", "st.nope", "--nats", server.url)
    assert (missing.returncode, missing.stderr) == (
        1, "error: no agent or pipeline named 'st.nope' is listed or served\n")
    typo = cli("status", "st.ehco", "--nats", server.url)
    assert (typo.returncode, typo.stderr) == (
        1, "error: no agent or pipeline named 'st.ehco' is listed or served; did you mean "
        "'st.echo'?\n")


def test_status_without_jetstream_still_reads_the_instances(tmp_path: Path) -> None:
    with NatsServer(jetstream=False) as bare:
        path, _ = write_mesh(tmp_path, MESH, HANDLERS)
        with UpProcess(path, bare.url, "--no-reload"):
            names = [(r["name"], r["status"], r["instances"]) for r in status(bare.url)]
    assert names == [("st.boom", "idle", 1), ("st.echo", "idle", 1), ("st.slow", "idle", 1)]


def test_hostile_stats_answers_do_not_break_status(server: NatsServer, ups: None) -> None:
    garbage = [b"not json", b"[1, 2]", json.dumps({"endpoints": "x"}).encode(),
               json.dumps({"id": "f", "metadata": "mesh-runtime", "endpoints": []}).encode(),
               json.dumps({"id": "f", "metadata": {"runtime": "mesh-runtime",
                                                   "endpoints_left_out": "idle"},
                           "endpoints": [7, {"subject": "mesh.agent.st.echo", "data": [1],
                                             "num_requests": "many", "num_errors": True,
                                             "processing_time": 1e99}]}).encode()]

    async def run() -> subprocess.CompletedProcess[str]:
        nc = await nats.connect(server.url)

        async def answer(msg: Any) -> None:
            for body in garbage:
                await nc.publish(msg.reply, body)

        await nc.subscribe("$SRV.STATS", cb=answer)
        await nc.flush()
        try:
            return await asyncio.to_thread(cli, "status", "st.echo", "--nats", server.url,
                                           "--json")
        finally:
            await nc.close()

    result = asyncio.run(run())
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)[0]
    assert (row["name"], row["status"]) == ("st.echo", "idle")
    # status stops gathering once both live instances answered: the fake may come too late
    assert row["instances"] in (2, 3)

"""`up --metrics-port`: Prometheus text on /metrics, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.request
from pathlib import Path

import nats

from runtime.core.protocol import MeshError
from runtime.nats.caller import call_agent
from tests.helpers import UpProcess, cli, free_port, write_mesh

HANDLERS = """
    def echo(payload):
        return payload

    def boom(payload):
        raise ValueError("no luck")
"""

MESH = """
    version: 1
    name: metrics-test
    agents:
      me{u}.echo: {handler: "{mod}:echo"}
      me{u}.boom: {handler: "{mod}:boom"}
"""


def scrape(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return [line for line in response.read().decode().splitlines()
                if line and not line.startswith("#")]


async def calls(url: str, name: str, times: int) -> None:
    nc = await nats.connect(url)
    try:
        for _ in range(times):
            with contextlib.suppress(MeshError):
                await call_agent(nc, name, {}, 5)
    finally:
        await nc.close()


def test_metrics_count_requests_latency_in_flight_and_reloads(
        nats_url: str, tmp_path: Path, unique: str) -> None:
    port = free_port()
    path, module = write_mesh(tmp_path, MESH.replace("{u}", unique), HANDLERS)
    with UpProcess(path, nats_url, "--metrics-port", str(port)) as up:
        asyncio.run(calls(nats_url, f"me{unique}.echo", 3))
        asyncio.run(calls(nats_url, f"me{unique}.boom", 2))
        lines = scrape(port)
        echo, boom = f'name="me{unique}.echo"', f'name="me{unique}.boom"'
        assert f'mesh_requests_total{{code="ok",{echo}}} 3.0' in lines
        assert f'mesh_requests_total{{code="handler_error",{boom}}} 2.0' in lines
        assert f'mesh_request_duration_seconds_count{{{echo}}} 3.0' in lines
        assert f'mesh_request_duration_seconds_bucket{{le="+Inf",{echo}}} 3.0' in lines
        assert f"mesh_in_flight{{{echo}}} 0.0" in lines
        assert "mesh_generation 1.0" in lines
        assert not [line for line in lines if line.startswith("mesh_reloads_total")]
        path.write_text(path.read_text() + f'  me{unique}.more: {{handler: "{module}:echo"}}\n')
        up.wait_for("reloaded:")
        lines = scrape(port)
        assert 'mesh_reloads_total{result="ok"} 1.0' in lines
        assert "mesh_generation 2.0" in lines


def test_a_taken_metrics_port_stops_up_with_what_to_do(nats_url: str, tmp_path: Path,
                                                       unique: str) -> None:
    path, _ = write_mesh(tmp_path, MESH.replace("{u}", unique), HANDLERS)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("up", "-f", str(path), "--nats", nats_url, "--metrics-port", str(port))
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2, f"error: cannot serve metrics on 127.0.0.1:{port}: Address already in use")

"""`up` from start to stop: embedded NATS, signals, draining, JetStream off, reconnects."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from pathlib import Path

import nats
import pytest

from runtime.nats.caller import call_agent
from runtime.nats.client import catalog
from runtime.nats.embedded import NatsServer
from tests.helpers import ROOT, UpProcess, cli, free_port, write_mesh

HANDLERS = """
    import asyncio

    async def echo(payload):
        return payload

    async def slow(payload):
        await asyncio.sleep(payload["seconds"])
        return {"done": True}
"""

MESH = """
    version: 1
    agents:
      life.echo:
        description: Echoes.
        handler: {mod}:echo
      life.slow:
        handler: {mod}:slow
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_stop_finishes_in_flight_requests_and_leaves_the_catalog(
        tmp_path: Path, fresh_nats: NatsServer, sig: signal.Signals) -> None:
    path, _ = write_mesh(tmp_path, MESH, HANDLERS)
    up = UpProcess(path, fresh_nats.url, "--no-reload")
    up.wait_for("ready:")
    nc = await nats.connect(fresh_nats.url)
    try:
        names = {e["name"] for e in await catalog(nc) or []}
        registry = await nc.jetstream().key_value("mesh-registry")
        card = json.loads((await registry.get("life.echo")).value)
        in_flight = asyncio.ensure_future(call_agent(nc, "life.slow", {"seconds": 0.5}, 5))
        await asyncio.sleep(0.1)  # let the request reach the handler before the signal
        code = await asyncio.to_thread(up.stop, sig)
        reply = await in_flight
        after = {e["name"] for e in await catalog(nc) or []}
        keys = await registry.keys() if await _has_keys(registry) else []
    finally:
        await nc.close()
    assert names == {"life.echo", "life.slow"}
    assert card["x-agentmesh"]["subject"] == "mesh.agent.life.echo"
    assert reply == {"done": True}
    assert code == 0
    assert after == set()
    assert "life.echo" not in keys
    assert up.lines[-1] == "stopped"


async def _has_keys(kv: object) -> bool:
    try:
        await kv.keys()  # type: ignore[attr-defined]
    except Exception:  # nats-py raises NoKeysError for an empty bucket
        return False
    return True


def test_embedded_server_serves_and_cleans_up(tmp_path: Path) -> None:
    port = free_port()
    embedded = f"    version: 1\n    nats:\n      embedded: {{port: {port}}}"
    path, _ = write_mesh(tmp_path, MESH.replace("    version: 1", embedded), HANDLERS)
    with UpProcess(path, None, "--no-reload", env={"NATS_URL": ""}) as up:
        assert up.wait_for("ready:") == f"ready: 2 agents, 0 pipelines on nats://127.0.0.1:{port}"
        called = cli("call", "life.echo", '{"x": 1}', "--nats", f"nats://127.0.0.1:{port}")
        assert json.loads(called.stdout) == {"x": 1}
    assert up.process.returncode == 0
    with socket.socket() as probe:  # the embedded server is gone with `up`
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_embedded_port_taken_says_how_to_join(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        path, _ = write_mesh(tmp_path, f"version: 1\nnats:\n  embedded: {{port: {port}}}\n")
        result = cli("up", "-f", str(path), "--no-reload", env={"NATS_URL": ""})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: port {port} on 127.0.0.1 is taken (is another mesh-runtime up or nats-server "
        f"running?). To join that server: mesh-runtime up --nats nats://127.0.0.1:{port}")


async def test_without_jetstream_agents_are_served_and_discovery_is_off(tmp_path: Path) -> None:
    path, _ = write_mesh(tmp_path, MESH, HANDLERS)
    with NatsServer(jetstream=False) as server, UpProcess(path, server.url, "--no-reload") as up:
        nc = await nats.connect(server.url)
        try:
            reply = await call_agent(nc, "life.echo", {"ok": True}, 5)
        finally:
            await nc.close()
        warnings = [line for line in up.lines if "discovery" in line]
    assert reply == {"ok": True}
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: JetStream is not available")
    assert warnings[0].endswith("agents are served, but discovery (catalog, registry) is off")


async def test_reconnects_after_the_broker_restarts(tmp_path: Path) -> None:
    port = free_port()
    path, _ = write_mesh(tmp_path, MESH, HANDLERS)
    first = NatsServer(port=port).start()
    up = UpProcess(path, f"nats://127.0.0.1:{port}", "--no-reload")
    try:
        up.wait_for("ready:")
        first.stop()
        up.wait_for("disconnected from NATS")
        with NatsServer(port=port) as second:
            up.wait_for("reconnected to NATS")
            nc = await nats.connect(second.url)
            try:
                reply = await call_agent(nc, "life.echo", {"after": "restart"}, 5)
            finally:
                await nc.close()
            assert reply == {"after": "restart"}
            assert up.process.poll() is None
    finally:
        up.stop()
        first.stop()


def test_a_broken_file_stops_up_with_positions_and_no_traceback(tmp_path: Path) -> None:
    path, _ = write_mesh(tmp_path, "version: 1\nagents:\n  a:\n    handler: nowhere:f\n")
    result = cli("up", "-f", str(path), "--nats", "nats://127.0.0.1:1")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}:4:14: agents.a.handler: module 'nowhere' not found (looked in "
        f"{tmp_path.resolve()}, the mesh file's folder, then on Python's path)"]


def test_schema_command_matches_the_committed_schema() -> None:
    printed = cli("schema")
    committed = json.loads((ROOT / "schemas" / "mesh.schema.json").read_text())
    assert printed.returncode == 0
    assert json.loads(printed.stdout) == committed
    assert committed["properties"]["version"] == {"const": 1, "title": "Version", "type": "integer"}


def test_demo_mesh_starts_with_the_modeline() -> None:
    first = (ROOT / "mesh.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=./schemas/mesh.schema.json"


async def test_token_from_the_environment_authenticates(tmp_path: Path) -> None:
    with NatsServer(extra_args=["--auth", "s3cret-token"]) as server:
        path, _ = write_mesh(tmp_path, MESH.replace(
            "    version: 1",
            f"    version: 1\n    nats:\n      url: nats://127.0.0.1:{server.port}\n"
            "      token: ${MESH_TEST_TOKEN}"), HANDLERS)
        with UpProcess(path, None, "--no-reload",
                       env={"MESH_TEST_TOKEN": "s3cret-token", "NATS_URL": ""}) as up:
            nc = await nats.connect(f"nats://s3cret-token@127.0.0.1:{server.port}")
            try:
                reply = await call_agent(nc, "life.echo", {"authed": True}, 5)
            finally:
                await nc.close()
            assert up.wait_for("ready:").endswith(f"127.0.0.1:{server.port}")
    assert reply == {"authed": True}


def test_nats_flag_beats_environment_beats_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.load.model import NatsSettings
    from runtime.nats.connection import choose_servers

    in_file = NatsSettings(url="nats://file:4222")
    monkeypatch.setenv("NATS_URL", "nats://env:4222")
    assert choose_servers(in_file, "nats://flag:4222") == ["nats://flag:4222"]
    assert choose_servers(in_file, None) == ["nats://env:4222"]
    monkeypatch.delenv("NATS_URL")
    assert choose_servers(in_file, None) == ["nats://file:4222"]
    assert choose_servers(NatsSettings(servers=["nats://a:1", "nats://b:2"]), None) == [
        "nats://a:1", "nats://b:2"]
    assert choose_servers(NatsSettings(), None) is None  # embedded
    assert choose_servers(in_file, "embedded") is None


async def test_a_name_stays_listed_while_another_process_still_serves_it(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = UpProcess(write_mesh(tmp_path / "a", MESH, HANDLERS)[0], fresh_nats.url, "--no-reload")
    second = UpProcess(write_mesh(tmp_path / "b", MESH, HANDLERS)[0], fresh_nats.url, "--no-reload")
    nc = await nats.connect(fresh_nats.url)
    try:
        first.wait_for("ready:")
        second.wait_for("ready:")
        both = {e["name"]: e for e in await catalog(nc) or []}
        assert await asyncio.to_thread(first.stop) == 0
        one = {e["name"]: e for e in await catalog(nc) or []}
        reply = await call_agent(nc, "life.echo", {"still": "served"}, 5)
        assert await asyncio.to_thread(second.stop) == 0
        none = await catalog(nc)
    finally:
        first.stop()
        second.stop()
        await nc.close()
    assert len(both["life.echo"]["x-instances"]) == 2
    assert len(one["life.echo"]["x-instances"]) == 1
    assert reply == {"still": "served"}
    assert none == []


def test_an_unreachable_server_says_where_the_url_came_from(tmp_path: Path) -> None:
    path, _ = write_mesh(tmp_path, MESH, HANDLERS)
    result = cli("up", "-f", str(path), "--nats", "nats://127.0.0.1:1", "--no-reload")
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot connect to NATS at nats://127.0.0.1:1: ")
    assert "The URL comes from --nats, else NATS_URL, else `nats:` in the mesh file" in result.stderr

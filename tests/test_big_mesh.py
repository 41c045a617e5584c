"""Meshes bigger than one catalog value: every agent serves, has its card, and `ls` and
`status` list them all; `up` warns once what an OpenAgentMesh `catalog()` misses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from runtime.nats.caller import call_agent
from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, cli

HANDLERS = "async def echo(payload):\n    return payload\n"


def big_mesh(folder: Path, count: int) -> Path:
    lines = ["version: 1", "name: big", "agents:"]
    for i in range(count):
        lines += [f"  big.agent{i:04d}:", "    handler: handlers:echo",
                  "    description: An agent of a big generated mesh, to fill the catalog.",
                  "    input: {type: object, properties: {n: {type: integer}}}"]
    (folder / "handlers.py").write_text(HANDLERS)
    path = folder / "mesh.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def small_payload_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A server whose messages are capped at 16 KB, so ~100 entries fill the catalog."""
    config = tmp_path / "nats.conf"
    config.write_text("max_payload: 16384\n")
    with NatsServer(extra_args=["-c", str(config)]) as server:
        yield server


async def catalog_names(url: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value("mesh-catalog")
        return [e["name"] for e in json.loads((await kv.get("catalog")).value or b"[]")]
    finally:
        await nc.close()


async def call(url: str, name: str) -> object:
    nc = await nats.connect(url)
    try:
        return await call_agent(nc, name, {"n": 7}, 10)
    finally:
        await nc.close()


def test_a_catalog_past_max_payload_warns_once_and_ls_lists_every_name(
        small_payload_nats: NatsServer, tmp_path: Path) -> None:
    url = small_payload_nats.url
    path = big_mesh(tmp_path, 150)
    with UpProcess(path, url, "--no-reload") as up:
        in_key = asyncio.run(catalog_names(url))
        assert 50 < len(in_key) < 150
        left_out = 150 - len(in_key)
        warning = up.wait_for("the catalog outgrows one NATS message")
        assert warning == (
            f"warning: the catalog outgrows one NATS message (max_payload 16384 bytes): it "
            f"lists {len(in_key)} names, and OpenAgentMesh clients' catalog() will miss "
            f"{left_out} (big.agent{len(in_key):04d}, big.agent{len(in_key) + 1:04d}, "
            f"big.agent{len(in_key) + 2:04d}, big.agent{len(in_key) + 3:04d}, "
            f"big.agent{len(in_key) + 4:04d} and {left_out - 5} more). They are served, "
            "have registry cards, and `mesh-runtime ls` lists them")
        listed = json.loads(cli("ls", "--nats", url, "--json").stdout)
        assert [e["name"] for e in listed] == [f"big.agent{i:04d}" for i in range(150)]
        assert asyncio.run(call(url, "big.agent0149")) == {"n": 7}
        rows = json.loads(cli("status", "--nats", url, "--json").stdout)
        assert len(rows) == 150 and {r["status"] for r in rows} == {"idle"}
    assert sum("outgrows" in line for line in up.lines) == 1


def test_five_thousand_agents_serve_and_are_all_listed(fresh_nats: NatsServer,
                                                       tmp_path: Path) -> None:
    url = fresh_nats.url
    path = big_mesh(tmp_path, 5000)
    with UpProcess(path, url, "--no-reload") as up:
        up.wait_for("ready: 5000 agents", timeout=90)
        assert asyncio.run(call(url, "big.agent4999")) == {"n": 7}
        listed = json.loads(cli("ls", "--nats", url, "--json").stdout)
        assert len(listed) == 5000 and not [e for e in listed if e.get("offline")]
        rows = json.loads(cli("status", "--nats", url, "--json").stdout)
        assert len(rows) == 5000
        assert {r["status"] for r in rows} == {"idle"}
        assert {r["instances"] for r in rows} == {1}


async def registry_keys(url: str) -> set[str]:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value("mesh-registry")
        try:
            return set(await kv.keys())
        except Exception:  # nats-py raises when no key is left
            return set()
    finally:
        await nc.close()


def test_a_killed_up_leaves_no_card_behind_for_names_the_catalog_had_no_room_for(
        small_payload_nats: NatsServer, tmp_path: Path) -> None:
    url = small_payload_nats.url
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = big_mesh(tmp_path / "a", 150)
    first.write_text(first.read_text().replace("name: big", "name: big\nhealth: {interval: 200ms}"))
    dying = UpProcess(first, url, "--no-reload")
    dying.wait_for("ready:")
    assert len(asyncio.run(registry_keys(url))) == 150
    dying.crash()  # the supervisor and its worker at once: nothing leaves cleanly
    second = tmp_path / "b" / "mesh.yaml"
    (tmp_path / "b" / "handlers.py").write_text(HANDLERS)
    second.write_text("version: 1\nname: other\nhealth: {interval: 200ms}\nagents:\n"
                      "  other.one: {handler: 'handlers:echo'}\n")
    with UpProcess(second, url, "--no-reload") as up:
        line = up.wait_for("removed 1 dead instance", timeout=10)
        assert "offline now: big.agent0000, big.agent0001" in line
        assert asyncio.run(registry_keys(url)) == {"other.one"}
        assert asyncio.run(catalog_names(url)) == ["other.one"]


def test_two_ups_writing_their_cards_at_once_both_land_every_card(fresh_nats: NatsServer,
                                                                 tmp_path: Path) -> None:
    url = fresh_nats.url
    ups = []
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
        path = big_mesh(tmp_path / side, 200)
        path.write_text(path.read_text().replace("big.", f"{side}."))
        ups.append(UpProcess(path, url, "--no-reload"))
    try:
        for up in ups:
            up.wait_for("ready:")
        expected = {f"{side}.agent{i:04d}" for side in ("a", "b") for i in range(200)}
        assert asyncio.run(registry_keys(url)) == expected
    finally:
        for up in ups:
            up.stop()

"""Twins: two `up` processes serving one name with different schemas are told so at start,
and when one stops, the catalog entry and the card are those of the one still serving."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nats

from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, cli, write_mesh

HANDLERS = """
    def echo(payload):
        return payload
"""

MESH = """
    version: 1
    name: twins
    health: {interval: 200ms}
    agents:
      tw.shared:
        handler: {mod}:echo
        input: {type: object, properties: {n: {type: TYPE}}}
      tw.same:
        handler: {mod}:echo
"""


def start(folder: Path, url: str, kind: str) -> tuple[UpProcess, str]:
    folder.mkdir()
    path, _ = write_mesh(folder, MESH.replace("TYPE", kind), HANDLERS)
    up = UpProcess(path, url, "--no-reload")
    line = up.wait_for("heartbeat every")
    return up, line.split("instance ")[1].split(":")[0]


async def _read(url: str, bucket: str, key: str) -> Any:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(bucket)
        return json.loads((await kv.get(key)).value)
    finally:
        await nc.close()


def shown_type(url: str) -> tuple[str, str]:
    """(the type of `n` in the card's input schema, the entry's serving instances)."""
    card = asyncio.run(_read(url, "mesh-registry", "tw.shared"))
    entries = asyncio.run(_read(url, "mesh-catalog", "catalog"))
    [entry] = [e for e in entries if e["name"] == "tw.shared"]
    kind = card["skills"][0]["inputSchema"]["properties"]["n"]["type"]
    return kind, ",".join(entry["x-instances"])


def test_twins_are_told_and_the_survivor_is_shown(fresh_nats: NatsServer,
                                                  tmp_path: Path) -> None:
    url = fresh_nats.url
    first, one = start(tmp_path / "one", url, "integer")
    second = None
    try:
        second, two = start(tmp_path / "two", url, "string")
        warning = second.wait_for("twins:")
        assert warning == (
            f"warning: twins: another `up` serves 'tw.shared' (instance {one}) with a "
            f"different definition (input or output schema) than this instance {two}: "
            "callers get either answer. Give one of them another name, or the same schemas")
        assert "twins:" not in first.log  # it started alone
        assert shown_type(url) == ("string", ",".join(sorted([one, two])))
        assert second.stop() == 0
        deadline = time.monotonic() + 10
        while shown_type(url) != ("integer", one):  # the survivor's, within a heartbeat
            assert time.monotonic() < deadline, shown_type(url)
            time.sleep(0.05)
        described = json.loads(cli("describe", "tw.shared", "--nats", url, "--json").stdout)
        assert described["input"]["properties"]["n"]["type"] == "integer"
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_workers_of_one_up_are_no_twins(fresh_nats: NatsServer, tmp_path: Path) -> None:
    path, _ = write_mesh(tmp_path, MESH.replace("TYPE", "integer"), HANDLERS)
    with UpProcess(path, fresh_nats.url, "--no-reload", "--workers", "2") as up:
        up.wait_for("ready:")
        assert up.stop() == 0
    assert "twins:" not in up.log

"""Heartbeats in `mesh-instances`: a `kill -9`'d `up` leaves the catalog, `ls` and `status`
say what went offline, and the next `up` to start cleans up after the dead."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, children_of, cli, write_mesh

HANDLERS = """
    def echo(payload):
        return payload
"""

MESH = """
    version: 1
    name: {mesh}
    health: {interval: 200ms}
    agents:
      hb.shared:
        handler: {mod}:echo
      hb.{own}:
        handler: {mod}:echo
"""


def start(folder: Path, url: str, own: str) -> UpProcess:
    folder.mkdir()
    text = MESH.replace("{own}", own).replace("{mesh}", f"hb-{own}")
    up = UpProcess(write_mesh(folder, text, HANDLERS)[0], url, "--no-reload")
    up.wait_for("ready:")
    return up


def instance_of(up: UpProcess) -> str:
    return up.wait_for("heartbeat every").split("instance ")[1].split(":")[0]


async def read(url: str, bucket: str, key: str) -> Any:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().key_value(bucket)
        try:
            return json.loads((await kv.get(key)).value or b"null")
        except Exception:
            return None
    finally:
        await nc.close()


def catalog(url: str) -> dict[str, list[str]]:
    entries = asyncio.run(read(url, "mesh-catalog", "catalog")) or []
    return {e["name"]: e["x-instances"] for e in entries}


def test_instance_record_has_the_documented_fields(fresh_nats: NatsServer,
                                                   tmp_path: Path) -> None:
    up = start(tmp_path / "a", fresh_nats.url, "a")
    try:
        instance = instance_of(up)
        record = asyncio.run(read(fresh_nats.url, "mesh-instances", instance))
        assert set(record) == {"instance_id", "mesh", "host", "pid", "started", "generation",
                               "agents", "heartbeat", "interval_s"}
        assert (record["instance_id"], record["mesh"], record["pid"], record["agents"],
                record["interval_s"], record["generation"]) == (
            instance, "hb-a", record["pid"], ["hb.a", "hb.shared"], 0.2, 1)
        assert record["pid"] in children_of(up.process.pid)  # its worker
        assert time.time() - 5 < record["heartbeat"] <= time.time() + 1
    finally:
        assert up.stop() == 0
    # a clean stop takes the record away at once
    assert asyncio.run(read(fresh_nats.url, "mesh-instances", instance)) is None


def test_a_killed_up_leaves_the_catalog_while_another_runs(fresh_nats: NatsServer,
                                                           tmp_path: Path) -> None:
    url = fresh_nats.url
    left, right = start(tmp_path / "l", url, "left"), start(tmp_path / "r", url, "right")
    try:
        dead, alive = instance_of(left), instance_of(right)
        assert sorted(catalog(url)["hb.shared"]) == sorted([dead, alive])
        left.crash()
        line = right.wait_for(f"removed 1 dead instance ({dead})", timeout=10)
        assert line.endswith("; offline now: hb.left")
        assert catalog(url) == {"hb.shared": [alive], "hb.right": [alive]}
        assert asyncio.run(read(url, "mesh-registry", "hb.left")) is None
        assert asyncio.run(read(url, "mesh-registry", "hb.shared"))["name"] == "hb.shared"
        assert asyncio.run(read(url, "mesh-instances", dead)) is None
    finally:
        left.stop()
        right.stop()


def test_the_next_up_to_start_cleans_up_after_a_dead_one(fresh_nats: NatsServer,
                                                         tmp_path: Path) -> None:
    url = fresh_nats.url
    first = start(tmp_path / "one", url, "one")
    dead = instance_of(first)
    first.crash()
    assert set(catalog(url)) == {"hb.shared", "hb.one"}  # nobody left to clean up yet
    second = start(tmp_path / "two", url, "two")
    try:
        second.wait_for(f"removed 1 dead instance ({dead})", timeout=10)
        assert set(catalog(url)) == {"hb.shared", "hb.two"}
    finally:
        second.stop()


def test_ls_and_status_show_what_went_offline(fresh_nats: NatsServer, tmp_path: Path) -> None:
    url = fresh_nats.url
    up = start(tmp_path / "gone", url, "gone")
    up.crash()
    deadline = time.monotonic() + 10
    while True:  # the record ages out after 3 intervals (600 ms): ask until it has
        listed = cli("ls", "--nats", url)
        if "offline" in listed.stdout or time.monotonic() > deadline:
            break
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "VERSION", "TAGS", "DESCRIPTION"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["hb.gone", "call", "0.1.0"], ["hb.shared", "call", "0.1.0"]]
    assert all(line.rstrip().endswith("(offline)") for line in lines[1:])
    shown = json.loads(cli("ls", "--nats", url, "--json").stdout)
    assert [e.get("offline") for e in shown] == [True, True]
    status = json.loads(cli("status", "--nats", url, "--json").stdout)
    assert status == [
        {"name": "hb.gone", "status": "offline", "instances": 0, "in_flight": 0,
         "requests": 0, "errors": 0, "avg_ms": 0.0, "p99_ms": 0.0, "last_error": ""},
        {"name": "hb.shared", "status": "offline", "instances": 0, "in_flight": 0,
         "requests": 0, "errors": 0, "avg_ms": 0.0, "p99_ms": 0.0, "last_error": ""}]


@pytest.mark.parametrize(("interval", "why"), [
    ("0s", "must be greater than zero"),
    ("soon", "use a number with a unit, like 250ms, 5s, 2m"),
])
def test_a_bad_health_interval_is_a_load_error(tmp_path: Path, interval: str, why: str) -> None:
    (tmp_path / "mesh.yaml").write_text(f"version: 1\nhealth: {{interval: {interval}}}\n")
    result = cli("validate", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        1, f"mesh.yaml:2:20: health.interval: invalid duration '{interval}': {why}\n")

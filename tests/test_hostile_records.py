"""Records other clients write are untrusted: malformed catalog entries and instance records
are skipped and logged once, forged heartbeats keep nobody listed, junk is reaped in
bounded passes, and `ls`, `status` and `describe` still answer."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.nats.catalog import Discovery
from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, cli, write_mesh

HANDLERS = """
    def echo(payload):
        return payload
"""

MESH = """
    version: 1
    name: hostile-records
    health: {interval: 200ms}
    agents:
      rec.echo:
        handler: {mod}:echo
"""


async def _with(url: str, work: Any) -> Any:
    nc = await nats.connect(url)
    try:
        await Discovery.open(nc, quiet=True)  # the buckets, as any `up` makes them
        return await work(nc)
    finally:
        await nc.close()


def put(url: str, bucket: str, key: str, value: Any) -> None:
    data = value if isinstance(value, bytes) else json.dumps(value).encode()

    async def work(nc: Client) -> None:
        await (await nc.jetstream().key_value(bucket)).put(key, data)

    asyncio.run(_with(url, work))


def get(url: str, bucket: str, key: str) -> Any:
    async def work(nc: Client) -> Any:
        try:
            return json.loads((await (await nc.jetstream().key_value(bucket)).get(key)).value)
        except Exception:
            return None

    return asyncio.run(_with(url, work))


def keys(url: str, bucket: str) -> list[str]:
    async def work(nc: Client) -> list[str]:
        try:
            return list(await (await nc.jetstream().key_value(bucket)).keys())
        except Exception:
            return []

    return asyncio.run(_with(url, work))


def start(folder: Path, url: str) -> UpProcess:
    path, _ = write_mesh(folder, MESH, HANDLERS)
    up = UpProcess(path, url, "--no-reload")
    up.wait_for("ready:", timeout=60)
    return up


def names(url: str) -> list[Any]:
    return [e.get("name") if isinstance(e, dict) else e
            for e in get(url, p.CATALOG_BUCKET, p.CATALOG_KEY) or []]


def test_malformed_catalog_entries_never_stop_an_up_updating_the_catalog(
        fresh_nats: NatsServer, tmp_path: Path) -> None:
    url = fresh_nats.url
    hostile = [{"name": "bad.count", "x-instances": 5},
               {"name": ["unhashable"], "x-instances": ["abc"]},
               {"name": "bad.ids", "x-instances": [["a"], {"b": 1}]},
               7, "text",
               {"name": "rec.echo", "x-instances": 5}]  # one of ours, malformed: replaced
    put(url, p.CATALOG_BUCKET, p.CATALOG_KEY, hostile)
    up = start(tmp_path, url)
    try:
        line = up.wait_for("malformed catalog entries")
        assert line.startswith("warning: skipped 6 malformed catalog entries written by "
                               "another client: 'bad.count' (x-instances is not a list but int)")
        assert names(url) == ["rec.echo", "bad.count", ["unhashable"], "bad.ids", 7, "text"]
        up.wait_for("heartbeat every")
        mark = len(up.lines)
        put(url, p.CATALOG_BUCKET, p.CATALOG_KEY, hostile)  # again, between two heartbeats
        deadline = time.monotonic() + 20
        while names(url)[0] != "rec.echo":  # healed: our entry written back beside them
            assert time.monotonic() < deadline, up.log
            time.sleep(0.05)
    finally:
        assert up.stop() == 0
    # the stop took our entry out; the others are no concern of ours and stay as written
    assert names(url) == ["bad.count", ["unhashable"], "bad.ids", 7, "text"]
    assert sum("malformed catalog entries" in line for line in up.lines) == 1  # once
    assert not [line for line in up.lines[mark:] if "could not" in line or "Traceback" in line]
    for command in (["ls"], ["ls", "--json"], ["status"], ["describe", "bad.count"]):
        result = cli(*command, "--nats", url)
        assert "Traceback" not in result.stderr, (command, result.stderr)
    assert cli("ls", "--nats", url).returncode == 0


def test_a_catalog_nested_past_what_python_parses_is_replaced(fresh_nats: NatsServer,
                                                              tmp_path: Path) -> None:
    put(fresh_nats.url, p.CATALOG_BUCKET, p.CATALOG_KEY, b"[" * 100_000)
    up = start(tmp_path, fresh_nats.url)
    try:
        assert names(fresh_nats.url) == ["rec.echo"]
        assert cli("ls", "--nats", fresh_nats.url).returncode == 0
    finally:
        assert up.stop() == 0
    assert "Traceback" not in up.log


def test_an_800kb_entry_of_50000_ids_costs_a_bounded_slice(fresh_nats: NatsServer,
                                                           tmp_path: Path) -> None:
    url = fresh_nats.url
    fake = [uuid.uuid4().hex[:12] for _ in range(50_000)]
    huge = {"name": "huge.entry", "description": "x", "x-instances": fake}
    put(url, p.CATALOG_BUCKET, p.CATALOG_KEY, [huge])
    up = start(tmp_path, url)
    try:
        up.wait_for("heartbeat every")
        up.wait_for("malformed catalog entries")
        deadline = time.monotonic() + 20
        while "huge.entry" in names(url):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert names(url) == ["rec.echo"]  # too big to keep: it would crowd out the rest
        listed = json.loads(cli("ls", "--nats", url, "--json").stdout)
        assert [e["name"] for e in listed] == ["rec.echo"]
    finally:
        assert up.stop() == 0
    assert max(len(line) for line in up.raw_lines) < 1_000, max(up.raw_lines, key=len)[:300]


def _record(instance: str, heartbeat: Any, interval: Any = 0.2,
            agent: str = "forged.name") -> bytes:
    body = json.dumps({"instance_id": instance, "mesh": "forged", "host": "h", "pid": 1,
                       "started": "2026-01-01T00:00:00Z", "generation": 1,
                       "agents": [agent], "heartbeat": heartbeat,
                       "interval_s": interval})
    return body.replace('"__inf__"', "Infinity").encode()


def test_forged_heartbeats_cannot_keep_the_dead_listed(fresh_nats: NatsServer,
                                                       tmp_path: Path) -> None:
    url = fresh_nats.url
    forged = {"a0000000000f": 1e12, "b0000000000f": "Infinity", "c0000000000f": "__inf__",
              "d0000000000f": "soon", "e0000000000f": [1]}
    old = {"f0000000000f": (time.time() - 200, 1e9)}  # a huge interval, capped at 60 s
    for instance, heartbeat in forged.items():
        put(url, p.INSTANCES_BUCKET, instance, _record(instance, heartbeat))
    for instance, (heartbeat, interval) in old.items():
        put(url, p.INSTANCES_BUCKET, instance, _record(instance, heartbeat, interval))
    unreadable = {"g0000000000f": b"\xff not json", "h0000000000f": b"[" * 50_000}
    for instance, value in unreadable.items():
        put(url, p.INSTANCES_BUCKET, instance, value)
    ids = sorted([*forged, *old])
    put(url, p.CATALOG_BUCKET, p.CATALOG_KEY, [
        {"name": "forged.name", "description": "", "version": "1", "tags": [],
         "invocable": True, "streaming": False, "x-instances": ids}])
    shown = json.loads(cli("ls", "--nats", url, "--json").stdout)
    assert [(e["name"], e.get("offline")) for e in shown] == [("forged.name", True)]
    status = json.loads(cli("status", "--nats", url, "--json").stdout)
    assert [(r["name"], r["status"], r["instances"]) for r in status] == [
        ("forged.name", "offline", 0)]
    up = start(tmp_path, url)
    try:
        line = up.wait_for("dead instance", timeout=20)
        assert line.startswith(f"removed {len(ids) + len(unreadable)} dead instances")
        assert line.endswith("offline now: forged.name")
        assert names(url) == ["rec.echo"]
        assert set(keys(url, p.INSTANCES_BUCKET)).isdisjoint([*ids, *unreadable])
    finally:
        assert up.stop() == 0


@pytest.mark.parametrize("ahead", [0.5, 3.0, 1e12])
def test_a_future_heartbeat_counts_only_as_long_as_the_server_stored_it(
        fresh_nats: NatsServer, tmp_path: Path, ahead: float) -> None:
    """A running `up` reads a record named in the catalog with the time the server stored
    it: a heartbeat from the future (near or far) is gone after 3 intervals all the same."""
    url = fresh_nats.url
    up = start(tmp_path, url)
    try:
        up.wait_for("heartbeat every")
        instance = "f1000000000f"
        put(url, p.INSTANCES_BUCKET, instance, _record(instance, time.time() + ahead,
                                                        agent="future.name"))
        entries = get(url, p.CATALOG_BUCKET, p.CATALOG_KEY)
        entries.append({"name": "future.name", "x-instances": [instance]})
        put(url, p.CATALOG_BUCKET, p.CATALOG_KEY, entries)
        line = up.wait_for(f"removed 1 dead instance ({instance})", timeout=20)
        assert line.endswith("offline now: future.name")
    finally:
        assert up.stop() == 0


async def _junk(nc: Client, count: int) -> None:
    for start_at in range(0, count, 1000):  # bounded bursts, each confirmed by a flush
        for n in range(start_at, min(start_at + 1000, count)):
            await nc.publish(f"$KV.{p.INSTANCES_BUCKET}.junk{n:06d}",
                             _record(f"junk{n:06d}", 1.0))
        await nc.flush()


def test_twenty_thousand_junk_records_are_reaped_in_bounded_passes(
        fresh_nats: NatsServer, tmp_path: Path) -> None:
    url = fresh_nats.url
    asyncio.run(_with(url, lambda nc: _junk(nc, 20_000)))
    deadline = time.monotonic() + 30
    while len(keys(url, p.INSTANCES_BUCKET)) < 20_000:
        assert time.monotonic() < deadline
    up = start(tmp_path, url)
    try:
        first = up.wait_for("dead instance", timeout=30)
        assert first.startswith("removed 500 dead instances (junk000000, junk000001,")
        assert first.endswith("and 490 more)")
        deadline = time.monotonic() + 120
        while len(keys(url, p.INSTANCES_BUCKET)) > 1:  # ours is left
            assert time.monotonic() < deadline, up.log[-2000:]
            time.sleep(0.5)
        removed = [line for line in up.lines if line.startswith("removed ")]
        assert len(removed) >= 40  # at most 500 a pass
        assert all(len(line) < 400 for line in removed)
        assert cli("status", "--nats", url).returncode == 0
    finally:
        assert up.stop() == 0

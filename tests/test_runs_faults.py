"""Recording never gets in a run's way: no JetStream, a full journal, hostile messages on
`mesh.run.>`, `record: false`; and what a run shows to Prometheus and `up -v`."""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path

import nats
from nats.js.api import DiscardPolicy, StreamConfig

from runtime.nats.caller import call_agent
from runtime.nats.embedded import NatsServer
from runtime.runs.reader import follow_run, read_run
from tests.helpers import UpProcess, cli, free_port, write_mesh

HANDLERS = """
    def pad(payload):
        return {"text": "y" * payload.get("size", 10)}
"""

MESH = """
    version: 1
    name: runs-faults
    {runs}
    agents:
      rf.pad: {handler: "{mod}:pad"}
    pipelines:
      rf.two:
        steps:
          - {id: a, call: rf.pad}
          - {id: b, call: rf.pad}
"""


def mesh(folder: Path, runs: str = "") -> Path:
    path, _ = write_mesh(folder, MESH.replace("{runs}", runs), HANDLERS)
    return path


def scrape(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return [line for line in response.read().decode().splitlines()
                if line and not line.startswith("#")]


def test_without_jetstream_runs_are_served_and_not_recorded(tmp_path: Path) -> None:
    with NatsServer(jetstream=False) as bare, \
            UpProcess(mesh(tmp_path), bare.url, "--no-reload", "-v") as up:
        async def go() -> dict:
            nc = await nats.connect(bare.url)
            try:
                return await call_agent(nc, "rf.two", {"size": 3}, 10)
            finally:
                await nc.close()

        import asyncio

        assert asyncio.run(go()) == {"text": "yyy"}
        up.wait_for("step b attempt 1 ok in")  # `up -v`: a line per step
        warnings = [line for line in up.lines if "runs are not recorded" in line]
        assert len(warnings) == 1 and "JetStream" in warnings[0]
        shown = cli("runs", "ls", "--nats", bare.url)
        assert shown.returncode == 1 and "run journal" in shown.stderr


async def test_a_full_journal_never_fails_a_run_and_counts_what_it_lost(tmp_path: Path) -> None:
    port = free_port()
    with NatsServer() as server:
        nc = await nats.connect(server.url)
        try:  # an operator's stream that refuses new events once full
            await nc.jetstream().add_stream(StreamConfig(
                name="MESH_RUNS", subjects=["mesh.run.>"], max_bytes=16 * 1024,
                max_age=7 * 86400, discard=DiscardPolicy.NEW))
            path = mesh(tmp_path, "runs: {max_bytes: 16KB}")
            with UpProcess(path, server.url, "--no-reload", "--metrics-port", str(port)) as up:
                for _ in range(2000):  # acks are sampled: run until one says so
                    assert await call_agent(nc, "rf.two", {"size": 2000}, 10) == {
                        "text": "y" * 2000}
                    if any("being dropped" in line for line in up.lines):
                        break
                up.wait_for("run events are being dropped")
                lines = scrape(port)
                [dropped] = [line for line in lines
                             if line.startswith("mesh_run_events_dropped_total")]
                assert float(dropped.split()[-1]) > 0
                assert len([line for line in up.lines if "being dropped" in line]) == 1
                assert any(line.startswith('mesh_step_duration_seconds_count{code="ok",'
                                           'pipeline="rf.two",step="a"}') for line in lines)
        finally:
            await nc.close()


async def test_a_journal_at_its_byte_limit_keeps_the_newest_runs(tmp_path: Path) -> None:
    with NatsServer() as server, UpProcess(mesh(tmp_path, "runs: {max_bytes: 32KB, keep: 1d}"),
                                           server.url, "--no-reload"):
        nc = await nats.connect(server.url)
        try:
            ids = [f"rf-{i}-{uuid.uuid4().hex[:8]}" for i in range(30)]
            for run in ids:
                await call_agent(nc, "rf.two", {"size": 1500}, 10, run)
            last = [r async for r in follow_run(nc, ids[-1])]
            assert last[-1].event and last[-1].event["event"] == "run_finished"
            assert await read_run(nc, ids[0]) == []  # the oldest went first
            info = await nc.jetstream().stream_info("MESH_RUNS")
            assert info.config.max_bytes == 32 * 1024 and info.config.max_age == 86400
            assert info.state.bytes <= 32 * 1024
        finally:
            await nc.close()


async def test_hostile_messages_on_the_journal_are_shown_as_unreadable(tmp_path: Path) -> None:
    with NatsServer() as server, UpProcess(mesh(tmp_path), server.url, "--no-reload"):
        nc = await nats.connect(server.url)
        try:
            good = "rf-good-" + uuid.uuid4().hex[:8]
            await call_agent(nc, "rf.two", {}, 10, good)
            [r async for r in follow_run(nc, good)]
            js = nc.jetstream()
            bad = "rf-bad-" + uuid.uuid4().hex[:8]
            for subject, body in [
                (f"mesh.run.{bad}.run_started", b"\xff\xfe not json"),
                (f"mesh.run.{bad}.step_finished", b"[1, 2, 3]"),
                (f"mesh.run.{bad}.run_finished", json.dumps(
                    {"run": good, "event": "run_finished", "at": 1}).encode()),
                (f"mesh.run.{good}.run_failed", json.dumps(
                    {"run": good, "event": "run_finished", "at": "soon"}).encode()),
                (f"mesh.run.{good}.step_started", json.dumps(
                    {"run": good, "event": "step_started", "at": 2, "step": {"x": 1},
                     "attempt": True}).encode()),
                ("mesh.run.x", b"{}"),
                (f"mesh.run.{bad}.a.b.c", b"\x1b[31mred"),
            ]:
                await js.publish(subject, body)
        finally:
            await nc.close()
        listed = cli("runs", "ls", "--json", "--nats", server.url)
        assert listed.returncode == 0, listed.stderr
        rows = {row["run"]: row for row in json.loads(listed.stdout)}
        assert rows[good]["status"] == "ok"  # a forged end does not end someone else's run
        assert rows[bad]["status"] == "unreadable"
        assert cli("runs", "ls", "--nats", server.url).returncode == 0
        shown = cli("runs", "show", good, "--nats", server.url)
        assert shown.returncode == 0, shown.stderr
        assert "ok" in shown.stdout.splitlines()[0]
        assert "2 unreadable message(s)" in shown.stdout
        shown_bad = cli("runs", "show", bad, "--json", "--nats", server.url)
        assert shown_bad.returncode == 0 and json.loads(shown_bad.stdout)["unreadable"] == 4
        assert "\x1b" not in shown_bad.stdout + cli("runs", "show", bad, "--nats",
                                                    server.url).stdout


async def test_record_false_for_the_mesh_records_nothing(tmp_path: Path) -> None:
    with NatsServer() as server, UpProcess(mesh(tmp_path, "runs: {record: false}"),
                                           server.url, "--no-reload") as up:
        nc = await nats.connect(server.url)
        try:
            assert await call_agent(nc, "rf.two", {"size": 1}, 10) == {"text": "y"}
            names = [name async for name in _streams(nc)]
            assert "MESH_RUNS" not in names
            assert not [line for line in up.lines if "runs are not recorded" in line]
        finally:
            await nc.close()


async def _streams(nc: nats.NATS):  # type: ignore[no-untyped-def]
    for info in await nc.jetstream().streams_info():
        yield info.config.name


async def test_a_journal_lost_mid_way_never_fails_a_run(tmp_path: Path) -> None:
    with NatsServer() as server, UpProcess(mesh(tmp_path), server.url, "--no-reload") as up:
        nc = await nats.connect(server.url)
        try:
            await call_agent(nc, "rf.two", {}, 10)
            await nc.jetstream().delete_stream("MESH_RUNS")  # an operator's mistake
            for _ in range(2000):  # acks are sampled: run until one says so
                assert await call_agent(nc, "rf.two", {"size": 4}, 10) == {"text": "yyyy"}
                if any("being dropped" in line for line in up.lines):
                    break
            line = up.wait_for("run events are being dropped")
            assert "no JetStream stream answered" in line
        finally:
            await nc.close()


async def test_two_workers_share_one_journal(tmp_path: Path) -> None:
    with NatsServer() as server, UpProcess(mesh(tmp_path), server.url, "--no-reload",
                                           "--workers", "2") as up:
        nc = await nats.connect(server.url)
        try:
            runs = [f"rf-w-{i}-{uuid.uuid4().hex[:6]}" for i in range(8)]
            for run in runs:  # the queue group spreads them over both workers
                await call_agent(nc, "rf.two", {}, 10, run)
            for run in runs:
                records = [r async for r in follow_run(nc, run)]
                assert records[-1].event and records[-1].event["event"] == "run_finished"
            assert not [line for line in up.lines if "not recorded" in line]
        finally:
            await nc.close()

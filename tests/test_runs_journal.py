"""The run journal written by a real `up`: every pipeline run's events in MESH_RUNS, read back
by a plain client, with the shapes and order users rely on."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client

from runtime.core.protocol import MeshError
from runtime.nats.caller import call_agent
from runtime.nats.embedded import NatsServer
from runtime.runs.reader import Record, follow_run, read_run
from tests.helpers import UpProcess, write_mesh

HANDLERS = """
    def upper(payload):
        return {"text": payload["text"].upper()}

    def count(payload):
        return {"n": len(payload["text"])}

    def boom(payload):
        raise ValueError("no luck")

    def big(payload):
        return {"blob": "x" * 640 * 1024}
"""

MESH = """
    version: 1
    name: runs-test
    agents:
      rj.upper: {handler: "{mod}:upper"}
      rj.count: {handler: "{mod}:count"}
      rj.boom: {handler: "{mod}:boom"}
      rj.big: {handler: "{mod}:big"}
    pipelines:
      rj.three:
        steps:
          - {id: a, call: rj.upper}
          - {id: b, call: rj.count, with: {text: "${{ steps.a.text }}"}}
          - id: c
            parallel:
              up: {call: rj.upper, with: {text: "${{ steps.a.text }}"}}
              each: {for_each: "[steps.a.text, 'yz']", call: rj.count, with: {text: "${{ item }}"}}
          - {id: skipped, when: "input.text == 'never'", call: rj.upper}
        returns: {n: "${{ steps.b.n }}"}
      rj.failing:
        steps:
          - {id: a, call: rj.upper}
          - {id: b, call: rj.boom, retry: {attempts: 2, backoff: 10ms}}
      rj.large:  # 16 x 640 KB: a 10 MB step output, though each reply fits NATS
        steps:
          - {id: a, for_each: "input.items", call: rj.big}
        returns: {ok: true}
      rj.nested:
        steps:
          - id: fe
            for_each: "input.items"
            parallel:
              u: {call: rj.upper, with: {text: "${{ item }}"}}
              n: [{id: inner, call: rj.count, with: {text: "${{ item }}"}}]
      rj.quiet:
        record: false
        steps:
          - {id: a, call: rj.upper}
"""


@pytest.fixture(scope="module")
def up(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    path, _ = write_mesh(tmp_path_factory.mktemp("runs"), MESH, HANDLERS)
    with UpProcess(path, nats_server.url, "--no-reload", "--workers", "1") as process:
        yield process


async def journal_of(nc: Client, run: str) -> list[Record]:
    """The run's records up to its end (events are stored a moment after the reply)."""
    return [record async for record in follow_run(nc, run)]


def kinds(records: list) -> list[tuple[str, str | None, int | None]]:
    return [(r.event["event"], r.event["step"], r.event["attempt"]) for r in records]


async def test_a_run_leaves_every_step_in_the_journal(nc: Client) -> None:
    run = "rj-" + uuid.uuid4().hex
    result = await call_agent(nc, "rj.three", {"text": "hello"}, 10, run)
    assert result == {"n": 5}
    records = await journal_of(nc, run)
    got = kinds(records)
    assert got[0] == ("run_started", None, None)
    assert got[-1] == ("run_finished", None, None)
    assert ("step_started", "a", 1) in got and ("step_finished", "a", 1) in got
    assert ("step_finished", "c.up", 1) in got and ("step_finished", "c.each[1]", 1) in got
    assert ("step_finished", "c.each", 1) in got and ("step_finished", "c", 1) in got
    assert ("step_skipped", "skipped", None) in got
    first = records[0].event
    assert first["input"] == {"text": "hello"} and first["pipeline"] == "rj.three"
    assert len(first["definition"]) == 16 and first["instance"]
    # No traceparent came: the run's trace started where it was served (docs/tracing.md).
    assert re.fullmatch("[0-9a-f]{32}", first["trace_id"]) and first["run"] == run
    finished = {r.event["step"]: r.event for r in records if r.event["event"] == "step_finished"}
    assert finished["a"]["output"] == {"text": "HELLO"}
    assert records[-1].event["output"] == {"n": 5}


async def test_a_failed_run_records_each_attempt_and_the_error(nc: Client) -> None:
    run = "rj-" + uuid.uuid4().hex
    with pytest.raises(MeshError) as caught:
        await call_agent(nc, "rj.failing", {"text": "x"}, 10, run)
    assert caught.value.code == "step_failed"
    got = kinds(await journal_of(nc, run))
    assert [k for k in got if k[1] == "b"] == [
        ("step_started", "b", 1), ("step_failed", "b", 1),
        ("step_started", "b", 2), ("step_failed", "b", 2)]
    records = await journal_of(nc, run)
    assert records[-1].event["event"] == "run_failed"
    assert records[-1].event["error"]["code"] == "step_failed"
    assert "no luck" in records[-2].event["error"]["message"]


async def test_a_10_mb_output_is_cut_and_the_run_unaffected(nc: Client) -> None:
    run = "rj-" + uuid.uuid4().hex
    assert await call_agent(nc, "rj.large", {"items": list(range(16))}, 60, run) == {"ok": True}
    records = await journal_of(nc, run)
    [step] = [r.event for r in records
              if r.event["event"] == "step_finished" and r.event["step"] == "a"]
    assert step["truncated"] is True and isinstance(step["output"], str)
    assert 60_000 < len(step["output"]) <= 64 * 1024
    assert records[-1].event["event"] == "run_finished"


async def test_record_false_leaves_no_trace(nc: Client) -> None:
    run = "rj-" + uuid.uuid4().hex
    assert await call_agent(nc, "rj.quiet", {"text": "x"}, 10, run) == {"text": "X"}
    assert await read_run(nc, run) == []


async def test_the_trace_id_comes_from_traceparent(nc: Client, up: UpProcess) -> None:
    run = "rj-" + uuid.uuid4().hex
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    await nc.request("mesh.agent.rj.quiet", b"{}", timeout=5)  # warm: nothing recorded
    reply = await nc.request("mesh.agent.rj.three", b'{"text": "ab"}', timeout=10, headers={
        "X-Mesh-Request-Id": run, "traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
    assert reply.headers["X-Mesh-Status"] == "ok"
    records = await journal_of(nc, run)
    assert {r.event["trace_id"] for r in records} == {trace}


@pytest.fixture
async def plain(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()




async def test_steps_inside_a_for_each_item_are_named_by_the_item(nc: Client) -> None:
    run = "rj-" + uuid.uuid4().hex
    await call_agent(nc, "rj.nested", {"items": ["p", "qq"]}, 10, run)
    done = {r.event["step"] for r in await journal_of(nc, run)
            if r.event["event"] == "step_finished"}
    assert done == {"fe", "fe[0]", "fe[1]", "fe[0].u", "fe[1].u", "fe[0].n.inner",
                    "fe[1].n.inner"}

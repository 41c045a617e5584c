"""Broadcast (scatter-gather): every agent offering a capability answers; errors and
silence are part of the result, and the wait ends once every live instance has answered."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.nats.broadcast import broadcast
from runtime.nats.bus import NatsBus
from runtime.nats.caller import call_agent
from tests.helpers import UpProcess, cli, write_mesh

P = f"b{uuid.uuid4().hex[:6]}"
CLASSIFY, QUICK = f"{P}.classify", f"{P}.quick"

HANDLERS = '''
    import asyncio

    async def spam(payload):
        return {"label": "spam"}

    async def ham(payload):
        return {"label": "ham"}

    async def broken(payload):
        raise RuntimeError("model not loaded")

    async def slow(payload):
        await asyncio.sleep(3)
        return {"label": "late"}

    async def ask_all(payload, ctx):
        answers = await ctx.broadcast("{quick}", {"text": payload["text"]}, within=2)
        return {"labels": sorted(a["result"]["label"] for a in answers)}
'''

MESH = f'''
    version: 1
    name: bcast
    agents:
      {P}.spam: {{handler: "{{mod}}:spam", capabilities: [{CLASSIFY}, {QUICK}]}}
      {P}.ham: {{handler: "{{mod}}:ham", capabilities: [{CLASSIFY}, {QUICK}]}}
      {P}.broken: {{handler: "{{mod}}:broken", capabilities: [{CLASSIFY}]}}
      {P}.slow: {{handler: "{{mod}}:slow", capabilities: [{CLASSIFY}], timeout: 5s}}
      {P}.ask: {{handler: "{{mod}}:ask_all"}}
    pipelines:
      {P}.vote:
        steps:
          - id: votes
            broadcast: {QUICK}
            with: {{text: "${{{{ input.text }}}}"}}
            within: 2s
            min_answers: 2
          - id: spam_votes
            set_state:
              key: {P}.last-vote
              value: "${{{{ length(steps.votes[?result.label == 'spam']) }}}}"
        returns:
          labels: "${{{{ sort(steps.votes[?status == 'ok'].result.label) }}}}"
          spam: "${{{{ steps.spam_votes }}}}"
      {P}.strict:
        steps:
          - id: votes
            broadcast: {CLASSIFY}
            within: 300ms
            min_answers: 3
'''


@pytest.fixture(scope="module")
def up(nats_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    path, _ = write_mesh(tmp_path_factory.mktemp("bcast"), MESH,
                         HANDLERS.replace("{quick}", QUICK))
    with UpProcess(path, nats_server.url, "--no-reload") as process:
        yield process



def test_cli_broadcast_reports_answers_errors_and_silence(up: UpProcess, nats_url: str) -> None:
    done = cli("broadcast", CLASSIFY, '{"text": "win money"}', "--within", "500ms",
               "--nats", nats_url)
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    by_agent = {a["agent"]: a for a in answers}
    assert set(by_agent) == {f"{P}.spam", f"{P}.ham", f"{P}.broken"}  # slow: not within 500ms
    assert by_agent[f"{P}.spam"]["status"] == "ok"
    assert by_agent[f"{P}.spam"]["result"] == {"label": "spam"}
    assert "error" not in by_agent[f"{P}.spam"]
    broken = by_agent[f"{P}.broken"]
    assert (broken["status"], broken["error"]["code"], broken["error"]["message"]) == (
        "error", "handler_error", "RuntimeError: model not loaded")
    assert "result" not in broken
    instances = {a["instance"] for a in answers}
    assert len(instances) == 1 and len(instances.pop()) == 12


async def test_the_wait_ends_when_every_live_instance_answered(nc: Client) -> None:
    started = time.monotonic()
    answers = await NatsBus(nc).broadcast(QUICK, {}, 10, "rid-1")
    assert time.monotonic() - started < 5  # the catalog says two answers will come
    assert sorted(a["result"]["label"] for a in answers) == ["ham", "spam"]


async def test_the_instance_is_the_one_the_catalog_lists(nc: Client) -> None:
    answers = await NatsBus(nc).broadcast(QUICK, {}, 2, "rid-2")
    catalog = json.loads((await (await nc.jetstream().key_value("mesh-catalog")).get(
        "catalog")).value)
    listed = {e["name"]: e["x-instances"] for e in catalog}
    for answer in answers:
        assert listed[answer["agent"]] == [answer["instance"]]


def test_a_capability_nobody_offers_answers_not_found_at_once(nats_url: str) -> None:
    started = time.monotonic()
    done = cli("broadcast", f"{P}.nobody", "{}", "--within", "20s", "--nats", nats_url)
    assert time.monotonic() - started < 10
    assert done.returncode == 1
    error = json.loads(done.stderr)
    assert (error["code"], error["message"]) == (
        "not_found", f"no agent offering capability '{P}.nobody' answered within 20s")


async def test_a_pipeline_votes_on_the_answers(nc: Client, nats_url: str) -> None:
    reply = await call_agent(nc, f"{P}.vote", {"text": "win money"}, 10)
    assert reply == {"labels": ["ham", "spam"], "spam": 1}


async def test_too_few_answers_fail_the_step(nc: Client) -> None:
    with pytest.raises(p.MeshError) as caught:
        await call_agent(nc, f"{P}.strict", {}, 10)
    assert caught.value.code == "step_failed"
    assert caught.value.details == {
        "step": "votes", "code": "handler_error",
        "message": f"broadcast to '{CLASSIFY}': 2 ok and 1 failed within 300ms; "
                   "min_answers is 3"}


async def test_a_handler_broadcasts(nc: Client) -> None:
    assert await call_agent(nc, f"{P}.ask", {"text": "x"}, 10) == {"labels": ["ham", "spam"]}


async def test_hostile_answers_are_error_entries(nc: Client, nats_url: str) -> None:
    rogue = await nats.connect(nats_url)
    capability = f"{P}.rogue"

    async def answer_junk(msg: Any) -> None:
        await msg.respond(b"\xff not json")
        await rogue.publish(msg.reply, b'{"ok": 1}', headers={
            p.HDR_STATUS: "error", p.HDR_SOURCE: "\x1b[31mred"})

    await rogue.subscribe(p.broadcast_subject(capability), cb=answer_junk)
    await rogue.flush()
    try:
        answers = await broadcast(nc, capability, {}, 0.5)
    finally:
        await rogue.close()
    assert answers[0] == {"agent": "", "instance": "", "status": "error", "error": {
        "code": "invalid_output", "message": "the answer is not JSON", "agent": "",
        "request_id": "", "details": {}}}
    assert answers[1]["status"] == "error"
    assert answers[1]["error"]["code"] == "unknown"
    assert len(answers) == 2


async def test_a_broadcast_sends_its_window_as_the_callers_budget(nc: Client) -> None:
    seen: asyncio.Queue[Any] = asyncio.Queue()
    capability = f"{P}.timed"
    sub = await nc.subscribe(p.broadcast_subject(capability), cb=seen.put)
    try:
        await broadcast(nc, capability, {}, 0.2)
        msg = await asyncio.wait_for(seen.get(), 1)
    finally:
        await sub.unsubscribe()
    assert msg.headers[p.HDR_TIMEOUT] == "0.200"

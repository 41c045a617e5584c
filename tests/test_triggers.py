"""Triggers against real nats-servers and real `up` processes: subjects (once per message
across two processes), streams (nothing lost across a kill -9, retries, dead letters), KV
puts, schedules (once per tick across two processes), events out and in, and reload."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from runtime.nats.caller import call_agent
from tests.helpers import UpProcess, cli, write_mesh

P = f"t{uuid.uuid4().hex[:6]}"

HANDLERS = '''
    import asyncio

    async def record(payload, ctx):
        await ctx.emit("seen", {"payload": payload, "request_id": ctx.request_id})
        return {}

    async def slow(payload, ctx):
        await asyncio.sleep(0.05)
        await ctx.emit("seen", {"payload": payload, "request_id": ctx.request_id})
        return {}

    async def flaky(payload, ctx):
        await ctx.emit("seen", {"payload": payload, "request_id": ctx.request_id})
        raise RuntimeError("down for now")
'''

MESH = f'''
    version: 1
    name: triggers
    agents:
      {P}.record:
        handler: "{{mod}}:record"
        triggers:
          - subject: {P}.orders.created
          - kv: {{bucket: {P}-kv, key: "customers.*"}}
            with: {{key: "${{{{ message.key }}}}", value: "${{{{ message.data }}}}"}}
          - event: {{from: {P}.accept, type: order.accepted}}
            with: {{event: "${{{{ message.data }}}}", type: "${{{{ message.headers.\\"ce-type\\" }}}}"}}
      {P}.slow:
        handler: "{{mod}}:slow"
        concurrency: 4
        triggers:
          - stream: {{stream: {P}_ORDERS, subject: "{P}.stream.>", ack_wait: 5s}}
      {P}.flaky:
        handler: "{{mod}}:flaky"
        input: {{type: object, properties: {{n: {{type: integer}}}}, required: [n]}}
        triggers:
          - stream: {{stream: {P}_FLAKY, subject: "{P}.flaky", max_deliver: 3, backoff: 50ms,
                      max_backoff: 100ms}}
      {P}.tick:
        handler: "{{mod}}:record"
        triggers:
          - schedule: {{every: 1s}}
            with: {{at: "${{{{ message.data.at }}}}"}}
    pipelines:
      {P}.accept:
        input: {{type: object, properties: {{id: {{type: integer}}}}, required: [id]}}
        triggers:
          - subject: {P}.pipe.in
        steps:
          - id: accepted
            emit: {{type: order.accepted, data: {{id: "${{{{ input.id }}}}"}}}}
'''


class Seen:
    """Every `seen` event an agent emitted, by agent."""

    def __init__(self, prefix: str = P) -> None:
        self.prefix = prefix
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.changed = asyncio.Event()

    async def on(self, msg: Msg) -> None:
        source = (msg.headers or {}).get("ce-source", "")
        self.events.setdefault(source, []).append(json.loads(msg.data))
        self.changed.set()

    def of(self, agent: str) -> list[dict[str, Any]]:
        return self.events.get(f"{self.prefix}.{agent}", [])

    async def until(self, agent: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.of(agent)) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"{agent}: {len(self.of(agent))} of {count} seen"
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1))
        return self.of(agent)


@pytest.fixture(scope="module")
def mesh_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = write_mesh(tmp_path_factory.mktemp("triggers"), MESH, HANDLERS)
    return path


@pytest.fixture(scope="module")
def up(mesh_file: Path, nats_server: Any) -> Iterator[UpProcess]:
    with UpProcess(mesh_file, nats_server.url) as process:
        process.wait_for(f"trigger started: {P}.tick")
        yield process


@pytest.fixture
async def seen(nc: Client) -> AsyncIterator[Seen]:
    found = Seen()
    sub = await nc.subscribe("mesh.agent.*.*.events", cb=found.on)
    await nc.flush()
    yield found
    await sub.unsubscribe()


async def test_a_subject_trigger_takes_each_message_once_across_two_ups(
        up: UpProcess, mesh_file: Path, nats_url: str, nc: Client, seen: Seen) -> None:
    with UpProcess(mesh_file, nats_url) as second:
        second.wait_for(f"trigger started: {P}.record subject")
        for n in range(40):
            await nc.publish(f"{P}.orders.created", json.dumps({"n": n}).encode())
        events = await seen.until("record", 40)
        await nc.publish(f"{P}.orders.created", b'{"n": "last"}')
        events = await seen.until("record", 41)
    assert sorted(e["payload"]["n"] for e in events[:40]) == list(range(40))
    assert len(events) == 41  # each message once, although two processes subscribe


async def test_a_body_that_is_not_json_is_logged_and_counted_and_up_goes_on(
        up: UpProcess, nc: Client, seen: Seen) -> None:
    start = len(up.lines)
    await nc.publish(f"{P}.orders.created", b"{not json")
    await nc.flush()  # wait_for blocks the loop: the message must be out first
    up.wait_for("invalid_input", start=start)
    await nc.publish(f"{P}.orders.created", b'{"n": "after"}')
    [event] = await seen.until("record", 1)
    assert event["payload"] == {"n": "after"}


async def test_a_flood_of_messages_is_served_within_the_targets_limits(
        up: UpProcess, nc: Client, seen: Seen) -> None:
    for n in range(300):
        await nc.publish(f"{P}.orders.created", json.dumps({"n": n}).encode())
    events = await seen.until("record", 300, timeout=60)
    assert sorted(e["payload"]["n"] for e in events) == list(range(300))
    assert up.process.poll() is None


async def test_events_carry_cloudevents_headers_and_trigger_other_agents(
        up: UpProcess, nc: Client, seen: Seen) -> None:
    got: list[Msg] = []
    sub = await nc.subscribe(f"mesh.agent.{P}.accept.events", cb=_collector(got))
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await nc.publish(f"mesh.agent.{P}.accept.events", b'{"id": 99}', headers={
        "ce-type": "order.refused", "ce-id": "x", "ce-source": "forged"})  # not its type
    reply = await nc.request(f"mesh.agent.{P}.accept", b'{"id": 7}', timeout=10,
                             headers={"traceparent": traceparent})
    assert reply.headers and reply.headers["X-Mesh-Status"] == "ok"
    [event] = await seen.until("record", 1)
    assert event["payload"] == {"event": {"id": 7}, "type": "order.accepted"}
    await sub.unsubscribe()
    [msg] = [m for m in got if (m.headers or {}).get("ce-source") == f"{P}.accept"]
    headers = msg.headers or {}
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == "order.accepted"
    assert headers["ce-source"] == f"{P}.accept"
    assert len(headers["ce-id"]) == 32 and headers["ce-time"].endswith("Z")
    # The request's trace continues: same trace id, this hop's span as the parent.
    assert headers["traceparent"][:36] == traceparent[:36]
    assert headers["traceparent"] != traceparent
    assert json.loads(msg.data) == {"id": 7}


async def test_a_subject_trigger_on_a_pipeline_starts_a_run(
        up: UpProcess, nc: Client, seen: Seen) -> None:
    await nc.publish(f"{P}.pipe.in", b'{"id": 8}')
    [event] = await seen.until("record", 1)
    assert event["payload"]["event"] == {"id": 8}


async def test_every_put_on_a_kv_key_is_a_request_and_deletes_are_not(
        up: UpProcess, nc: Client, seen: Seen) -> None:
    js = nc.jetstream()
    kv = await _bucket(js, f"{P}-kv")
    # A bucket keeps one value per key (history 1): a put is a change of state, and two puts
    # faster than the trigger reads may start one run with the latest. So: one at a time.
    await kv.put("customers.alice", b'{"tier": 1}')
    await seen.until("record", 1)
    await kv.put("customers.alice", b'{"tier": 2}')
    await seen.until("record", 2)
    await kv.delete("customers.alice")
    await kv.put("orders.x", b"{}")  # not under customers.*
    # A hostile key (raw publish past the client's checks) is data, never a subject.
    await js.publish(f"$KV.{P}-kv.customers.$evil", b'"x"')
    try:
        events = await seen.until("record", 3)
    except AssertionError:
        raise AssertionError(f"seen: {seen.of('record')}\nlog:\n{up.log}") from None
    assert [e["payload"] for e in events] == [
        {"key": "customers.alice", "value": {"tier": 1}},
        {"key": "customers.alice", "value": {"tier": 2}},
        {"key": "customers.$evil", "value": "x"}]  # the delete started nothing
    assert all(e["request_id"].startswith(f"{P}_record-KV_{P}-kv-") for e in events)


async def test_a_stream_message_fails_is_retried_then_dead_lettered_with_its_error(
        up: UpProcess, nc: Client, seen: Seen) -> None:
    js = nc.jetstream()
    dead: list[Msg] = []
    requests: list[Msg] = []  # a copy of every request the trigger sends (no queue group)
    sub = await nc.subscribe(f"mesh.dead.{P}.flaky", cb=_collector(dead))
    copies = await nc.subscribe(f"mesh.agent.{P}.flaky", cb=_collector(requests))
    await _consumer(js, f"{P}_FLAKY", f"{P}.flaky")
    await js.publish(f"{P}.flaky", b'{"n": 1}')
    await js.publish(f"{P}.flaky", b"not json")  # refused at once: no retry loop
    await js.publish(f"{P}.flaky", b'{"n": "one"}')  # fails the input schema: no retry
    await _until(lambda: len(dead) >= 3)
    await sub.unsubscribe()
    await copies.unsubscribe()
    tries = [e["payload"] for e in seen.of("flaky")]
    assert tries == [{"n": 1}] * 3  # the handler ran 3 times (max_deliver), never for the rest
    # One run key for the message, whatever the delivery; a request id per delivery.
    sent = [m.headers or {} for m in requests if m.data == b'{"n": 1}']
    [run_key] = {h["X-Mesh-Run-Key"] for h in sent}
    assert run_key.startswith(f"{P}_flaky-{P}_FLAKY-")
    assert [h["X-Mesh-Request-Id"] for h in sent] == [f"{run_key}-{n}" for n in (1, 2, 3)]
    by_body = {m.data: m.headers or {} for m in dead}
    assert by_body[b'{"n": 1}']["X-Mesh-Dead-Code"] == "handler_error"
    error = json.loads(by_body[b'{"n": 1}']["X-Mesh-Dead-Error"])
    assert error["deliveries"] == 3 and error["stream"] == f"{P}_FLAKY"
    assert by_body[b"not json"]["X-Mesh-Dead-Code"] == "invalid_input"
    assert json.loads(by_body[b'{"n": "one"}']["X-Mesh-Dead-Error"])["deliveries"] == 1
    kept = await js.stream_info("MESH_DEAD")  # and kept, so nothing is lost silently
    assert kept.state.messages >= 3


async def test_a_schedule_fires_once_per_tick_across_two_ups(
        up: UpProcess, mesh_file: Path, nats_url: str, seen: Seen) -> None:
    with UpProcess(mesh_file, nats_url) as second:
        second.wait_for(f"trigger started: {P}.tick")
        events = await seen.until("tick", 4, timeout=20)
    ticks = [e["payload"]["at"] for e in events]
    assert len(ticks) == len(set(ticks))  # no tick fired twice
    assert all(t == int(t) for t in ticks)  # on whole seconds: every process agrees
    assert len({e["request_id"] for e in events}) == len(events)


def test_send_and_listen_from_a_terminal(up: UpProcess, nats_url: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.helpers import ROOT

    listen = subprocess.Popen(
        [sys.executable, "-m", "runtime", "listen", f"mesh.agent.{P}.record.events", "--json",
         "--count", "1", "--nats", nats_url], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert listen.stderr is not None
        assert "listening on" in listen.stderr.readline()
        sent = cli("send", f"{P}.orders.created", '{"n": "cli"}', "--nats", nats_url)
        assert sent.returncode == 0, sent.stderr
        out, _ = listen.communicate(timeout=20)
    finally:
        listen.kill()
        listen.wait()
    line = json.loads(out)
    assert line["data"]["payload"] == {"n": "cli"}
    assert line["headers"]["ce-type"] == "seen"
    refused = cli("send", "$JS.API.STREAM.DELETE.X", "{}", "--nats", nats_url)
    assert refused.returncode == 2 and "'$'" in refused.stderr
    bad_header = cli("send", f"{P}.x", "{}", "-H", "no colon", "--nats", nats_url)
    assert bad_header.returncode == 2 and "KEY:VALUE" in bad_header.stderr
    wildcard = cli("send", f"{P}.*", "{}", "--nats", nats_url)
    assert wildcard.returncode == 2 and "wildcard" in wildcard.stderr


async def test_stream_messages_survive_a_kill_9_of_up(
        tmp_path: Path, nats_url: str) -> None:
    q = f"k{uuid.uuid4().hex[:6]}"  # names of its own: the module's up serves P's
    path, _ = write_mesh(tmp_path, MESH.replace(P, q), HANDLERS)
    nc = await nats.connect(nats_url)
    found = Seen(q)
    await nc.subscribe(f"mesh.agent.{q}.slow.events", cb=found.on)
    js = nc.jetstream()
    first = UpProcess(path, nats_url)
    try:
        first.wait_for("ready:")
        await _consumer(js, f"{q}_ORDERS", f"{q}.slow")
        for n in range(60):
            await js.publish(f"{q}.stream.o{n}", json.dumps({"n": n}).encode())
        await found.until("slow", 5)
        first.crash()  # kill -9 of that up (and its workers), by PID, mid-way
    finally:
        first.stop()
    assert len(found.of("slow")) < 60
    with UpProcess(path, nats_url):
        await _until(lambda: {e["payload"]["n"] for e in found.of("slow")} == set(range(60)),
                     timeout=60)
    await nc.close()


async def test_reload_adds_and_removes_triggers_and_a_gone_schedule_stops(
        tmp_path: Path, nats_url: str) -> None:
    q = f"r{uuid.uuid4().hex[:6]}"  # names of its own: the module's up serves P's
    base = MESH.replace(P, q)
    path, module = write_mesh(tmp_path, base, HANDLERS)
    nc = await nats.connect(nats_url)
    found = Seen(q)
    await nc.subscribe(f"mesh.agent.{q}.*.events", cb=found.on)
    with UpProcess(path, nats_url) as up:
        up.wait_for(f"trigger started: {q}.tick")
        start = len(up.lines)
        added = base.replace(f"- subject: {q}.orders.created",
                             f"- subject: {q}.orders.created\n          - subject: {q}.added")
        added = added.replace(f"      {q}.tick:\n", f"      {q}.gone:\n")
        path.write_text(_dedent(added).replace("{mod}", module))
        up.wait_for(f"trigger started: {q}.record subject {q}.added", start=start)
        up.wait_for(f"trigger stopped: {q}.tick schedule", start=start)
        up.wait_for("reloaded:", start=start)
        touched = [line for line in up.lines[start:] if "trigger st" in line]
        assert not [line for line in touched if f"{q}.record subject {q}.orders" in line
                    or f"{q}.slow stream" in line]  # unchanged triggers are not touched
        await nc.publish(f"{q}.added", b'{"n": "added"}')
        await found.until("record", 1)
        start = len(up.lines)
        path.write_text(_dedent(base.replace(f"      {q}.tick:\n", f"      {q}.gone:\n"))
                        .replace("{mod}", module))
        up.wait_for(f"trigger stopped: {q}.record subject {q}.added", start=start)
        await nc.publish(f"{q}.added", b'{"n": "removed"}')
        await nc.publish(f"{q}.orders.created", b'{"n": "still"}')
        events = await found.until("record", 2)
        assert [e["payload"]["n"] for e in events] == ["added", "still"]
        ticks = len(found.of("tick"))
        await found.until("gone", 2)  # two ticks of the renamed target: the old one is gone
        assert len(found.of("tick")) <= ticks + 1  # at most a tick already under way
    await nc.close()


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).lstrip()


def _collector(into: list[Msg]) -> Any:
    async def collect(msg: Msg) -> None:
        into.append(msg)
    return collect


async def _until(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def _bucket(js: Any, name: str) -> Any:
    deadline = time.monotonic() + 20
    while True:
        try:
            kv = await js.key_value(name)
            await js.consumer_info(f"KV_{name}", f"mesh-trigger-{P}_record")
            return kv
        except Exception:
            assert time.monotonic() < deadline, f"bucket {name} not made by the trigger"
            await asyncio.sleep(0.05)


async def _wait_stream(js: Any, name: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            await js.stream_info(name)
            return
        except Exception:
            assert time.monotonic() < deadline, f"stream {name} not made by the trigger"
            await asyncio.sleep(0.05)


async def _consumer(js: Any, stream: str, target: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            await js.consumer_info(stream, "mesh-trigger-" + target.replace(".", "_"))
            return
        except Exception:
            assert time.monotonic() < deadline, "consumer not made by the trigger"
            await asyncio.sleep(0.05)


__all__ = ["call_agent"]


def test_describe_shows_triggers_and_events(up: UpProcess, nats_url: str) -> None:
    info = json.loads(cli("describe", f"{P}.accept", "--json", "--nats", nats_url).stdout)
    assert info["triggers"] == [f"subject {P}.pipe.in"]
    assert info["events"] == ["order.accepted"]
    text = cli("describe", f"{P}.record", "--nats", nats_url).stdout
    assert f"trigger:  kv {P}-kv customers.*" in text
    assert f"trigger:  event {P}.accept order.accepted" in text


async def test_the_orders_example_runs_as_its_readme_says(nats_url: str) -> None:
    from tests.helpers import ROOT

    nc = await nats.connect(nats_url)
    events: list[Msg] = []
    dead: list[Msg] = []
    await nc.subscribe("mesh.agent.orders.process.events", cb=_collector(events))
    await nc.subscribe("mesh.agent.mail.confirm.events", cb=_collector(events))
    await nc.subscribe("mesh.dead.orders.process", cb=_collector(dead))
    with UpProcess(ROOT / "examples" / "triggers" / "mesh.yaml", nats_url) as up:
        up.wait_for("trigger started: orders.process stream ORDERS")
        js = nc.jetstream()
        await _consumer(js, "ORDERS", "orders.process")
        await js.publish("orders.created", b'{"id": "A-1", "items": [{"price": 12.5}]}')
        await js.publish("orders.created", b'{"id": "A-3"}')
        await js.publish("orders.created", b'{"id": "A-2", "items": []}')  # check refuses it
        await _until(lambda: len(events) >= 2 and len(dead) >= 2)
    await nc.close()
    told = {(m.headers or {})["ce-type"]: json.loads(m.data) for m in events}
    assert told == {"order.accepted": {"id": "A-1", "total": 12.5}, "mail.sent": {"order": "A-1"}}
    by_id = {json.loads(m.data)["id"]: m.headers or {} for m in dead}
    assert by_id["A-3"]["X-Mesh-Dead-Code"] == "invalid_input"
    assert by_id["A-2"]["X-Mesh-Dead-Code"] == "step_failed"  # at once: no retry would help
    told = json.loads(by_id["A-2"]["X-Mesh-Dead-Error"])
    assert told["deliveries"] == 1 and told["details"]["code"] == "invalid_input"


async def test_metrics_count_what_came_of_each_trigger_message(
        tmp_path: Path, nats_url: str) -> None:
    from tests.helpers import free_port
    from tests.test_metrics import scrape

    q = f"m{uuid.uuid4().hex[:6]}"
    path, _ = write_mesh(tmp_path, MESH.replace(P, q), HANDLERS)
    port = free_port()
    nc = await nats.connect(nats_url)
    found = Seen(q)
    await nc.subscribe(f"mesh.agent.{q}.record.events", cb=found.on)
    with UpProcess(path, nats_url, "--metrics-port", str(port)) as up:
        up.wait_for(f"trigger started: {q}.record subject")
        for body in (b'{"n": 1}', b"{bad", b'{"n": 2}'):
            await nc.publish(f"{q}.orders.created", body)
        await found.until("record", 2)
        await nc.flush()
        labels = f'name="{q}.record",outcome="%s",trigger="subject {q}.orders.created"'
        await _until(lambda: f"mesh_trigger_messages_total{{{labels % 'ok'}}} 2.0"
                     in scrape(port))
        lines = scrape(port)
        assert f"mesh_trigger_messages_total{{{labels % 'invalid_input'}}} 1.0" in lines
        assert f"mesh_trigger_messages_total{{{labels % 'dead'}}} 0.0" in lines
    await nc.close()


async def test_a_forged_message_in_the_pull_inbox_is_never_acked_to_its_reply(
        up: UpProcess, nc: Client) -> None:
    """Anyone may publish to a pull consumer's inbox, and an ack is a publish to the
    message's reply: a forged `$JS.API.STREAM.DELETE` reply must not delete a stream."""
    js = nc.jetstream()
    await _bucket(js, f"{P}-kv")
    await js.add_stream(name=f"{P}_VICTIM", subjects=[f"{P}.victim"])
    pulls: list[Msg] = []
    spy = await nc.subscribe(f"$JS.API.CONSUMER.MSG.NEXT.KV_{P}-kv.mesh-trigger-{P}_record",
                             cb=_collector(pulls))
    await _until(lambda: bool(pulls))  # an idle trigger asks for messages every 5 s
    await spy.unsubscribe()
    inbox = pulls[-1].reply
    start = len(up.lines)
    for headers in ({"KV-Operation": "DEL"}, {}):
        await nc.publish(inbox, b"{}", reply=f"$JS.API.STREAM.DELETE.{P}_VICTIM",
                         headers=headers)
    await nc.flush()
    up.wait_for("did not come from its consumer", start=start)
    assert (await js.stream_info(f"{P}_VICTIM")).config.name == f"{P}_VICTIM"
    assert up.process.poll() is None


GRACEFUL = '''
    import asyncio

    async def slowly(payload, ctx):
        await ctx.emit("started", payload)
        await asyncio.sleep(1)
        await ctx.emit("done", payload)
        return {}
'''


async def test_a_stop_lets_a_stream_request_in_flight_finish_and_acks_it(
        tmp_path: Path, nats_url: str) -> None:
    q = f"g{uuid.uuid4().hex[:6]}"
    path, _ = write_mesh(tmp_path, f'''
        version: 1
        agents:
          {q}.slowly:
            handler: "{{mod}}:slowly"
            triggers:
              - stream: {{stream: {q}_S, subject: "{q}.in"}}
    ''', GRACEFUL)
    nc = await nats.connect(nats_url)
    told: list[Msg] = []
    await nc.subscribe(f"mesh.agent.{q}.slowly.events", cb=_collector(told))
    js = nc.jetstream()
    up = UpProcess(path, nats_url)
    try:
        up.wait_for("ready:")
        await _consumer(js, f"{q}_S", f"{q}.slowly")
        await js.publish(f"{q}.in", b'{"n": 1}')
        await _until(lambda: len(told) == 1)  # started
        assert up.stop() == 0  # SIGTERM while the request runs
    finally:
        up.stop()
    await _until(lambda: len(told) == 2)
    info = await js.consumer_info(f"{q}_S", f"mesh-trigger-{q}_slowly")
    await nc.close()
    assert [(m.headers or {})["ce-type"] for m in told] == ["started", "done"]
    assert info.num_ack_pending == 0 and info.num_redelivered == 0  # acked, once

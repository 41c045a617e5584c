"""NATS micro (ADR-32): `up` answers $SRV.PING/INFO/STATS as any micro client expects."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import nats
import pytest

from runtime.core.protocol import MeshError
from runtime.nats.caller import call_agent
from runtime.serve.stats import LAST_ERRORS
from tests.helpers import UpProcess, cli, write_mesh

SCHEMAS = Path(__file__).parent / "micro_schemas"

HANDLERS = """
    def echo(payload):
        return payload

    def boom(payload):
        raise ValueError("no luck")
"""

MESH = """
    version: 1
    name: micro-{unique}
    agents:
      mi{unique}.echo:
        handler: {mod}:echo
        input: {type: object, properties: {n: {type: integer}}}
      mi{unique}.boom:
        handler: {mod}:boom
    pipelines:
      mi{unique}.twice:
        steps:
          - {id: one, call: mi{unique}.echo}
"""

LAST_HANDLER_ERROR = LAST_ERRORS["handler_error"]  # never the handler's own text


def schema(kind: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{kind}_response.json").read_text())


def check(kind: str, response: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(schema(kind)).validate(response)


@pytest.fixture(scope="module")
def served(nats_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[UpProcess, str]]:
    unique = "x" + __import__("uuid").uuid4().hex[:6]
    folder = tmp_path_factory.mktemp("micro")
    path, _ = write_mesh(folder, MESH.replace("{unique}", unique), HANDLERS)
    with UpProcess(path, nats_server.url, "--no-reload") as up:
        yield up, unique


async def gather(url: str, subject: str, want: Any, body: bytes = b"") -> list[dict[str, Any]]:
    """Every answer to `subject` until one satisfies `want` (bounded: 10 s)."""
    nc = await nats.connect(url)
    answers: list[dict[str, Any]] = []
    found = asyncio.Event()

    async def on(msg: Any) -> None:
        answers.append(json.loads(msg.data))
        if want(answers[-1]):
            found.set()

    try:
        inbox = nc.new_inbox()
        await nc.subscribe(inbox, cb=on)
        await nc.publish(subject, body, reply=inbox)
        await asyncio.wait_for(found.wait(), 10)
        return answers
    finally:
        await nc.close()


def test_ping_info_and_stats_answer_bare_by_service_and_by_id(
        served: tuple[UpProcess, str], nats_url: str) -> None:
    _, unique = served
    name = f"micro-{unique}"

    def ours(r: dict[str, Any]) -> bool:
        return r.get("name") == name

    pings = asyncio.run(gather(nats_url, "$SRV.PING", ours))
    ping = next(r for r in pings if ours(r))
    check("ping", ping)
    instance = ping["id"]
    assert len(instance) == 12 and int(instance, 16) >= 0
    for verb in ("PING", "INFO", "STATS"):
        for subject in (f"$SRV.{verb}", f"$SRV.{verb}.{name}", f"$SRV.{verb}.{name}.{instance}"):
            answers = asyncio.run(gather(nats_url, subject, ours, body=b"\x00garbage"))
            answer = next(r for r in answers if ours(r))
            check(verb.lower(), answer)
            assert answer["id"] == instance


def test_info_names_every_endpoint_with_its_subject_queue_group_and_metadata(
        served: tuple[UpProcess, str], nats_url: str) -> None:
    _, unique = served
    name = f"micro-{unique}"
    info = asyncio.run(gather(nats_url, f"$SRV.INFO.{name}", lambda r: True))[0]
    check("info", info)
    endpoints = {e["name"]: e for e in info["endpoints"]}
    assert endpoints[f"mi{unique}_echo"] == {
        "name": f"mi{unique}_echo", "subject": f"mesh.agent.mi{unique}.echo",
        "queue_group": f"q.mi{unique}.echo",
        "metadata": {"agent": f"mi{unique}.echo", "kind": "agent", "streaming": "false"}}
    assert endpoints[f"mi{unique}_twice"]["metadata"]["kind"] == "pipeline"


def test_stats_count_requests_errors_and_times(served: tuple[UpProcess, str],
                                               nats_url: str) -> None:
    _, unique = served
    name = f"micro-{unique}"

    async def calls() -> None:
        nc = await nats.connect(nats_url)
        try:
            for n in range(3):
                await call_agent(nc, f"mi{unique}.echo", {"n": n}, 5)
            with pytest.raises(MeshError):
                await call_agent(nc, f"mi{unique}.boom", {}, 5)
        finally:
            await nc.close()

    asyncio.run(calls())
    stats = asyncio.run(gather(nats_url, f"$SRV.STATS.{name}", lambda r: True))[0]
    check("stats", stats)
    assert datetime.fromisoformat(stats["started"]).tzinfo is not None
    endpoints = {e["name"]: e for e in stats["endpoints"]}
    echo, boom = endpoints[f"mi{unique}_echo"], endpoints[f"mi{unique}_boom"]
    assert (echo["num_requests"], echo["num_errors"], echo["last_error"]) == (3, 0, "")
    assert echo["processing_time"] > 0
    assert echo["average_processing_time"] == echo["processing_time"] // 3
    assert set(echo["data"]) == {"in_flight", "p50_ms", "p99_ms", "last_answers",
                                 "last_failures"}
    assert echo["data"]["in_flight"] == 0 and echo["data"]["last_answers"] == 3
    assert (boom["num_requests"], boom["num_errors"]) == (1, 1)
    assert boom["last_error"] == LAST_HANDLER_ERROR
    assert boom["data"]["last_failures"] == 1


@pytest.mark.parametrize(("agent", "body", "code", "text"), [
    ("boom", b"{}", "500", "ValueError: no luck"),
    ("echo", b'{"n": "x"}', "400",
     'input does not match the schema: /n: "x" is not of type "integer"'),
])
def test_error_replies_carry_the_micro_error_headers(
        served: tuple[UpProcess, str], nats_url: str, agent: str, body: bytes, code: str,
        text: str) -> None:
    _, unique = served

    async def ask() -> dict[str, str]:
        nc = await nats.connect(nats_url)
        try:
            reply = await nc.request(f"mesh.agent.mi{unique}.{agent}", body, timeout=5)
            return dict(reply.headers or {})
        finally:
            await nc.close()

    headers = asyncio.run(ask())
    assert headers["Nats-Service-Error-Code"] == code
    assert headers["Nats-Service-Error"] == text


def test_a_reply_subject_on_a_system_prefix_is_never_answered(
        served: tuple[UpProcess, str], nats_url: str) -> None:
    _, unique = served

    async def run() -> list[bytes]:
        nc = await nats.connect(nats_url)
        hijacked: list[bytes] = []

        async def seen(msg: Any) -> None:
            hijacked.append(msg.data)

        try:
            await nc.subscribe("$JS.API.STREAM.DELETE.victim", cb=seen)
            await nc.publish(f"$SRV.PING.micro-{unique}", b"", reply="$JS.API.STREAM.DELETE.victim")
            # the same subscription answers in order: once this answer is in, that one was not
            await nc.request(f"$SRV.PING.micro-{unique}", b"", timeout=5)
            await nc.flush()
            return hijacked
        finally:
            await nc.close()

    assert asyncio.run(run()) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("version: 1\nname: my mesh\n",
     "mesh.yaml:2:7: name: invalid mesh name 'my mesh': use letters, digits, '_' and '-' (it "
     "is the NATS micro service name), like nlp-demo\n"),
    ("version: 1\nagents:\n  a.b: {handler: 'h:f'}\n  a_b: {handler: 'h:f'}\n",
     "mesh.yaml:4:3: agents.a_b: 'a.b' and 'a_b' have the same NATS micro endpoint name 'a_b' "
     "(dots become underscores): rename one\n"),
])
def test_names_that_cannot_be_micro_names_are_load_errors(tmp_path: Path, text: str,
                                                          expected: str) -> None:
    (tmp_path / "h.py").write_text("def f(payload):\n    return payload\n")
    (tmp_path / "mesh.yaml").write_text(text)
    result = cli("validate", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (1, expected)

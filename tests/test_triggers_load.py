"""`triggers:` and `emit:` checked at load: every problem at its file:line:col, exact text;
ids from a message's coordinates; the graph and the generated schema show them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.core.issues import MeshFileError
from runtime.core.subjects import matches
from runtime.load.loader import load_mesh
from runtime.load.model import mesh_json_schema
from runtime.triggers.message import coordinate_id
from tests.helpers import ROOT, write_mesh

HANDLERS = "def echo(payload):\n    return payload\n"

BAD = '''
    version: 1
    agents:
      echo:
        handler: "{mod}:echo"
        triggers:
          - subject: "bad subject"
          - subject: "$JS.API.>"
          - subject: "$KV.mesh-context.>"
          - subject: mesh.agent.echo
          - subject: "orders.>.x"
          - stream: {stream: "OR.DERS", subject: "$JS.x"}
          - kv: {bucket: mesh-context, key: "a..b"}
          - schedule: {cron: "*/5 * * *"}
          - schedule: {every: 100ms}
          - event: {from: nobody, type: "a b"}
          - subject: x.y
            with: {id: "${{ message.data.id }}", s: "${{ input.x }}", z: "${{ message.foo }}"}
          - subject: x.y
    pipelines:
      p:
        steps:
          - id: a
            call: echo
          - id: e
            emit: {type: "bad type"}
'''

EXPECTED = [
    "6:18: agents.echo.triggers[0].subject: invalid subject \"bad subject\": tokens separated "
    "by '.', none empty, no spaces or control characters, '*' and '>' only as whole tokens "
    "('>' last)",
    "7:18: agents.echo.triggers[1].subject: subject '$JS.API.>' starts with '$' (the server's "
    "own: $JS, $KV, $SYS); a trigger may not take it (for a KV bucket, use kv:)",
    "8:18: agents.echo.triggers[2].subject: subject '$KV.mesh-context.>' starts with '$'",
    "9:18: agents.echo.triggers[3].subject: subject 'mesh.agent.echo' takes the requests to "
    "'echo' itself: each request would start another",
    "10:18: agents.echo.triggers[4].subject: invalid subject \"orders.>.x\"",
    "11:26: agents.echo.triggers[5].stream.stream: invalid stream name \"OR.DERS\": letters, "
    "digits, _ and -",
    "11:46: agents.echo.triggers[5].stream.subject: subject '$JS.x' starts with '$'",
    "12:41: agents.echo.triggers[6].kv.key: invalid key pattern \"a..b\"",
    "13:26: agents.echo.triggers[7].schedule.cron: invalid cron line \"*/5 * * *\": five "
    "fields (minute hour day month weekday), like \"*/5 * * * *\"",
    "14:27: agents.echo.triggers[8].schedule.every: every is 0.1s; at least 1s",
    "15:37: agents.echo.triggers[9].event.type: invalid event type 'a b'",
    "17:49: agents.echo.triggers[10].with.s: expression 'input.x' reads 'input'; a trigger's "
    "with: reads message.data, message.subject, message.headers (and message.key for kv)",
    "17:70: agents.echo.triggers[10].with.z: expression 'message.foo' reads message.foo",
    "18:9: agents.echo.triggers[11]: the same subject as trigger 10 of 'echo' (each message "
    "would start it twice)",
    "25:22: pipelines.p.steps[1].emit.type: invalid event type 'bad type'",
]


def test_every_trigger_problem_is_reported_at_its_place(tmp_path: Path) -> None:
    path, _ = write_mesh(tmp_path, BAD, HANDLERS)
    with pytest.raises(MeshFileError) as caught:
        load_mesh(path)
    texts = [str(issue).split("mesh.yaml:", 1)[1] for issue in caught.value.issues]
    warnings = [str(w) for w in caught.value.warnings]
    for expected in EXPECTED:
        assert any(t.startswith(expected) for t in texts), f"missing: {expected}\n" + \
            "\n".join(texts)
    assert len(texts) == len(EXPECTED)
    assert any("triggers[9].event.from: 'nobody' is no agent or pipeline" in w for w in warnings)


def test_a_trigger_needs_exactly_one_kind(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = write_mesh(tmp_path, '''
        version: 1
        agents:
          echo:
            handler: "{mod}:echo"
            triggers:
              - {subject: a, schedule: {every: 5s}}
    ''', HANDLERS)
    assert main(["validate", "-f", str(path)]) == 1
    err = capsys.readouterr().err
    assert "mesh.yaml:6:9: agents.echo.triggers[0]: a trigger needs exactly one of 'subject', " \
        "'stream', 'kv', 'schedule' or 'event'" in err


GOOD = '''
    version: 1
    agents:
      echo:
        handler: "{mod}:echo"
        triggers:
          - subject: orders.created
          - stream: {stream: ORDERS, subject: "orders.>", max_deliver: 5, ack_wait: 1m}
          - kv: {bucket: mesh-context, key: "customers.*"}
            with: {key: "${{ message.key }}", value: "${{ message.data }}"}
          - schedule: {cron: "*/5 * * * *"}
          - event: {from: p, type: order.accepted}
    pipelines:
      p:
        triggers:
          - schedule: {every: 30s}
            with: {}
        steps:
          - id: told
            emit: {type: order.accepted, data: {at: "${{ mesh.request_id }}"}}
'''


def test_a_good_file_gives_one_checked_trigger_each(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = write_mesh(tmp_path, GOOD, HANDLERS)
    mesh = load_mesh(path)
    assert [t.describe() for t in mesh.triggers] == [
        "subject orders.created", "stream ORDERS orders.>", "kv mesh-context customers.*",
        "schedule cron */5 * * * *", "event p order.accepted", "schedule every 30s"]
    assert [t.target for t in mesh.triggers] == ["echo"] * 5 + ["p"]
    assert len({t.key for t in mesh.triggers}) == 6
    assert main(["graph", "-f", str(path)]) == 0
    graph = capsys.readouterr().out
    assert "schedule every 30s" in graph and "emit order.accepted" in graph
    assert 'a0_1["agent echo"]' in graph and "kv mesh-context customers.*" in graph
    assert main(["graph", "-f", str(path), "echo"]) == 0
    only = capsys.readouterr().out
    assert "agent echo" in only and "subgraph" not in only


def test_a_trigger_edit_changes_the_target_for_reload(tmp_path: Path) -> None:
    path, _ = write_mesh(tmp_path, GOOD, HANDLERS)
    before = load_mesh(path)
    path.write_text(path.read_text().replace("orders.created", "orders.made"))
    after = load_mesh(path)
    assert before.agents["echo"].fingerprint != after.agents["echo"].fingerprint
    assert {t.key for t in before.triggers} ^ {t.key for t in after.triggers}


def test_ids_from_coordinates_are_request_ids_whatever_the_names() -> None:
    assert coordinate_id("orders.process", "ORDERS", 42) == "orders_process-ORDERS-42"
    long = coordinate_id("a" * 200, "S", 1)
    assert len(long) == 128 and long == coordinate_id("a" * 200, "S", 1)
    assert coordinate_id("a" * 200, "S", 1) != coordinate_id("a" * 200, "S", 2)
    hostile = coordinate_id("t", "$evil.\r\n*>", 1)
    assert all(c.isalnum() or c in "_-" for c in hostile)


@pytest.mark.parametrize(("pattern", "subject", "expected"), [
    ("mesh.agent.echo", "mesh.agent.echo", True), ("mesh.>", "mesh.agent.echo", True),
    ("mesh.*.echo", "mesh.agent.echo", True), ("mesh.*", "mesh.agent.echo", False),
    ("mesh.agent.echo.>", "mesh.agent.echo", False), ("orders.created", "mesh.agent.x", False)])
def test_subject_matching(pattern: str, subject: str, expected: bool) -> None:
    assert matches(pattern, subject) is expected


def test_the_schema_file_is_generated_from_the_models() -> None:
    kept = json.loads((ROOT / "schemas" / "mesh.schema.json").read_text())
    assert kept == json.loads(json.dumps(mesh_json_schema()))
    assert "Trigger" in kept["$defs"] and "EmitSpec" in kept["$defs"]

"""The CLI as a new user meets it: --version, options anywhere, durations, stdin, hints, describe."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import UpProcess, cli, write_mesh

PREFIX = f"cli{uuid.uuid4().hex[:6]}"

HANDLERS = """
    from pydantic import BaseModel

    class Question(BaseModel):
        who: str
        times: int = 1

    class Answer(BaseModel):
        text: str

    def upper(payload):
        return {"text": payload["text"].upper()}

    async def greet(q: Question) -> Answer:
        return Answer(text=("hi " + q.who) * q.times)
"""

MESH = f"""
    version: 1
    agents:
      {PREFIX}.upper:
        description: Upper-cases text.
        handler: {{mod}}:upper
        input: {{type: object, properties: {{text: {{type: string}}}}, required: [text]}}
        output: {{type: object, properties: {{text: {{type: string}}}}, required: [text]}}
        tags: [demo]
        version: 2.0.0
      {PREFIX}.greet:
        description: Greets someone (pydantic models).
        handler: {{mod}}:greet
    pipelines:
      {PREFIX}.shout:
        description: Upper-cases twice.
        input: {{type: object, properties: {{text: {{type: string}}}}, required: [text]}}
        steps:
          - {{id: one, call: {PREFIX}.upper, with: {{text: "${{{{ input.text }}}}"}}}}
"""


@pytest.fixture(scope="module")
def up(nats_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    path, _ = write_mesh(tmp_path_factory.mktemp("cli"), MESH, HANDLERS)
    with UpProcess(path, nats_server.url, "--no-reload") as process:
        yield process


def test_version_prints_the_installed_version() -> None:
    result = cli("--version")
    assert (result.returncode, result.stdout) == (0, f"mesh-runtime {metadata.version('mesh-runtime')}\n")


def test_verbose_works_after_the_command(tmp_path: Path, nats_url: str) -> None:
    path, _ = write_mesh(tmp_path, f"""
        version: 1
        agents:
          {PREFIX}.v: {{handler: {{mod}}:f}}
    """, "def f(payload):\n    return payload\n")
    with UpProcess(path, nats_url, "--no-reload", "-v") as up:
        assert f"debug: generation 1: added {PREFIX}.v (" in up.wait_for("generation 1: added")


@pytest.mark.parametrize("args", [["--log-level", "warning", "validate"],
                                  ["validate", "--log-level", "WARNING"], ["-v", "validate"]])
def test_global_options_before_or_after_the_command(tmp_path: Path, args: list[str]) -> None:
    path, _ = write_mesh(tmp_path, "version: 1\n")
    result = cli(*args, "-f", str(path))
    assert (result.returncode, result.stderr) == (0, "")


def test_bad_log_level_is_refused() -> None:
    result = cli("validate", "--log-level", "loud")
    assert result.returncode == 2
    assert ("argument --log-level: invalid choice: 'loud' (choose from 'debug', 'info', "
            "'warning', 'error')") in result.stderr


def test_timeout_takes_plain_seconds(up: UpProcess, nats_url: str) -> None:
    result = cli("call", f"{PREFIX}.upper", '{"text": "a"}', "--timeout", "5", "--nats", nats_url)
    assert (result.returncode, json.loads(result.stdout)) == (0, {"text": "A"})


def test_bad_timeout_says_what_works() -> None:
    result = cli("call", "x", "--timeout", "soon")
    assert result.returncode == 2
    assert ("argument --timeout: invalid duration 'soon': use seconds (5, 0.5) or a unit "
            "(250ms, 5s, 2m)") in result.stderr


def test_call_reads_a_piped_payload(up: UpProcess, nats_url: str) -> None:
    result = cli("call", f"{PREFIX}.upper", "--nats", nats_url, input='{"text": "piped"}')
    assert (result.returncode, json.loads(result.stdout)) == (0, {"text": "PIPED"})


def test_call_without_payload_or_pipe_sends_an_empty_object(up: UpProcess, nats_url: str) -> None:
    result = cli("call", f"{PREFIX}.upper", "--nats", nats_url)
    assert result.returncode == 1
    assert json.loads(result.stderr)["code"] == "invalid_input"


def test_unknown_name_at_call_gets_a_did_you_mean(up: UpProcess, nats_url: str) -> None:
    result = cli("call", f"{PREFIX}.uper", '{"text": "a"}', "--nats", nats_url)
    assert result.returncode == 1
    assert json.loads(result.stderr)["message"] == (
        f"no agent named '{PREFIX}.uper' is serving; did you mean '{PREFIX}.upper'?")


def test_describe_an_agent(up: UpProcess, nats_url: str) -> None:
    cli("call", f"{PREFIX}.upper", '{"text": "a"}', "--nats", nats_url)
    result = cli("describe", f"{PREFIX}.upper", "--json", "--nats", nats_url)
    info = json.loads(result.stdout)
    [instance] = info.pop("instances")
    assert (instance["live"], instance["host"]) == (True, socket.gethostname())
    assert instance["pid"] in up.worker_pids()  # the pid is a worker's: `up` supervises them
    stats = info.pop("stats")
    assert (stats["instances"], stats["in_flight"]) == (1, 0)
    assert stats["requests"] >= 1  # other tests call it too (and some of them fail on purpose)
    assert info == {
        "name": f"{PREFIX}.upper", "kind": "agent", "description": "Upper-cases text.",
        "version": "2.0.0", "tags": ["demo"], "streaming": False, "invocable": True,
        "subject": f"mesh.agent.{PREFIX}.upper",
        "input": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        "output": {"type": "object", "properties": {"text": {"type": "string"}},
                   "required": ["text"]},
        "status": "idle",
    }


def test_describe_shows_pydantic_schemas(up: UpProcess, nats_url: str) -> None:
    info = json.loads(cli("describe", f"{PREFIX}.greet", "--json", "--nats", nats_url).stdout)
    assert info["input"]["properties"]["who"] == {"title": "Who", "type": "string"}
    assert info["input"]["required"] == ["who"]
    assert info["output"]["properties"] == {"text": {"title": "Text", "type": "string"}}


def test_describe_a_pipeline_as_text(up: UpProcess, nats_url: str) -> None:
    result = cli("describe", f"{PREFIX}.shout", "--nats", nats_url)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[:4] == [f"{PREFIX}.shout (pipeline, version 1.0.0)", "  Upper-cases twice.",
                         f"subject:  mesh.agent.{PREFIX}.shout", "tags:     pipeline"]
    assert "input schema:" in lines and "output schema: (none: anything)" in lines


def test_describe_an_unknown_name(up: UpProcess, nats_url: str) -> None:
    result = cli("describe", f"{PREFIX}.gret", "--nats", nats_url)
    assert result.returncode == 1
    assert result.stderr == (f"error: no agent or pipeline named '{PREFIX}.gret' in the catalog; "
                             f"did you mean '{PREFIX}.greet'?\n")


def test_init_then_test_then_up(tmp_path: Path, nats_url: str) -> None:
    created = cli("init", "my-mesh", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout == (
        "created my-mesh/: mesh.yaml, handlers.py, mesh.test.yaml, schemas/greeting.json, "
        "schemas/mesh.schema.json\nnext: cd my-mesh && mesh-runtime test && mesh-runtime up\n")
    folder = tmp_path / "my-mesh"
    assert (folder / "mesh.yaml").read_text().startswith(
        "# yaml-language-server: $schema=./schemas/mesh.schema.json\n")
    assert cli("validate", cwd=folder).stdout == "mesh.yaml: ok (2 agents, 1 pipelines)\n"
    tested = cli("test", cwd=folder)
    assert (tested.returncode, tested.stdout.splitlines()[-1][:9]) == (0, "4 passed "), tested.stdout
    with UpProcess(folder / "mesh.yaml", nats_url, "--no-reload"):
        called = cli("call", "hello.loud", '{"name": "Bo"}', "--nats", nats_url)
        assert json.loads(called.stdout) == {"message": "HELLO, BO!"}


def test_init_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text("# mine\n")
    result = cli("init", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (1, (
        "error: handlers.py already exists; init never overwrites a file (name a new folder: "
        "mesh-runtime init my-mesh)\n"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["handlers.py"]


async def _write_discovery(url: str, catalog: bytes, cards: dict[str, bytes]) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    catalog_kv = await js.create_key_value(bucket="mesh-catalog")
    registry_kv = await js.create_key_value(bucket="mesh-registry")
    await catalog_kv.put("catalog", catalog)
    for key, value in cards.items():
        await registry_kv.put(key, value)
    await nc.close()


HOSTILE_CATALOG = json.dumps([
    {"name": "ok.agent", "description": "fine\x1b[31m", "tags": "not-a-list", "x-instances": 7},
    {"name": 5}, "text", None,
    {"name": "bad.card", "description": "card is junk", "x-instances": ["a b", "..", "$JS"]},
    {"name": "x" * 80, "description": "too long for a tool name"},
]).encode()


async def test_hostile_discovery_data_gets_clear_output(fresh_nats: Any) -> None:
    await _write_discovery(fresh_nats.url, HOSTILE_CATALOG, {
        "ok.agent": json.dumps({"skills": 5, "x-agentmesh": "junk"}).encode(),
        "bad.card": b"\xff not json",
    })
    described = cli("describe", "ok.agent", "--nats", fresh_nats.url)
    assert described.returncode == 0, described.stderr
    assert described.stdout.splitlines()[:4] == [
        "ok.agent (agent, version )", "  fine\\x1b[31m", "subject:  mesh.agent.ok.agent", "tags:     -"]
    info = json.loads(cli("describe", "bad.card", "--json", "--nats", fresh_nats.url).stdout)
    assert (info["input"], info["output"], info["instances"], info["status"]) == (
        None, None, [{"id": "a b"}, {"id": ".."}, {"id": "$JS"}], "offline")
    tools = cli("tools", "--format", "anthropic", "--nats", fresh_nats.url)
    assert [t["name"] for t in json.loads(tools.stdout)] == ["bad_card", "ok_agent"]
    assert tools.stderr == (f"warning: '{'x' * 80}' left out: a tool name must match "
                            "^[a-zA-Z0-9_-]{1,64}$ once dots are made underscores\n")


async def test_a_catalog_that_is_not_json_reads_as_empty(fresh_nats: Any) -> None:
    await _write_discovery(fresh_nats.url, b"{not json", {})
    listed = cli("ls", "--nats", fresh_nats.url)
    assert (listed.returncode, listed.stdout) == (0, "(the catalog is empty)\n")
    described = cli("describe", "a.b", "--nats", fresh_nats.url)
    assert (described.returncode, described.stderr) == (
        1, "error: no agent or pipeline named 'a.b' in the catalog\n")


def _echo_offering(folder: Path, agent: str, capability: str) -> Path:
    """A mesh of one echo agent offering `capability`."""
    path, _ = write_mesh(folder, f"""
        version: 1
        agents:
          {agent}: {{handler: "{{mod}}:f", capabilities: [{capability}]}}
    """, "def f(payload):\n    return payload\n")
    return path


def test_unknown_capability_at_call_suggests_a_capability(tmp_path: Path, nats_url: str) -> None:
    path = _echo_offering(tmp_path, f"{PREFIX}.sum", f"{PREFIX}.summarize")
    with UpProcess(path, nats_url, "--no-reload"):
        result = cli("call", "--capability", f"{PREFIX}.sumarize", "--nats", nats_url)
    assert result.returncode == 1
    assert json.loads(result.stderr)["message"].endswith(f"; did you mean '{PREFIX}.summarize'?")


def test_broadcast_takes_plain_seconds_and_a_piped_payload(tmp_path: Path, nats_url: str) -> None:
    path = _echo_offering(tmp_path, f"{PREFIX}.echo", f"{PREFIX}.echoing")
    with UpProcess(path, nats_url, "--no-reload"):
        result = cli("broadcast", f"{PREFIX}.echoing", "--within", "0.5", "--nats", nats_url,
                     input='{"x": 1}')
    assert result.returncode == 0, result.stderr
    [answer] = json.loads(result.stdout)
    assert (answer["agent"], answer["status"], answer["result"]) == (f"{PREFIX}.echo", "ok", {"x": 1})

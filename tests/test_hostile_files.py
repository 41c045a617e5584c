"""Hostile mesh files: each is a clear error at file:line:col, fast, and `up` keeps watching."""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.cli import main
from runtime.load.loader import load_mesh
from runtime.load.yamlguard import compose
from tests.helpers import ROOT, UpProcess, write_mesh

HANDLERS = """
    def echo(payload):
        return payload
"""
MEMORY_CAP = 1_500_000_000  # bytes of address space for a process that reads a hostile file


def alias_bomb() -> str:
    """The classic "billion laughs": each of nine levels lists the one before nine times."""
    lines = ['  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for before, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"  {name}: &{name} [" + ",".join([f"*{before}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def capped_validate(folder: Path) -> tuple[int, list[str]]:
    """`mesh-runtime validate` in a process of its own whose memory is capped."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    done = subprocess.run([sys.executable, "-m", "runtime", "validate"], cwd=folder,
                          capture_output=True, text=True, timeout=60, preexec_fn=cap,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    return done.returncode, done.stderr.splitlines()


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["validate", "-f", str(path)])
    err = capsys.readouterr().err
    return code, [line.replace(str(path), "mesh.yaml") for line in err.splitlines()]


def test_alias_bomb_is_an_error_at_the_alias(tmp_path: Path) -> None:
    text = "version: 1\nbomb:\n" + alias_bomb()
    assert len(text) < 800
    (tmp_path / "mesh.yaml").write_text(text)
    assert capped_validate(tmp_path) == (1, [
        "mesh.yaml:8:10: aliases expand to more than 100,000 values (at *e); write the "
        "values out, or use fewer aliases"])


def test_deep_nesting_is_an_error_not_a_crash(tmp_path: Path) -> None:
    depth = 200_000  # libyaml's composer recursed in C on this and crashed the process
    (tmp_path / "mesh.yaml").write_text("version: 1\nx: " + "[" * depth + "]" * depth + "\n")
    code, lines = capped_validate(tmp_path)
    # Who stops it first, and in whose words, is the YAML library's choice (PyYAML 6.0.4's
    # libyaml says "exceeded maximum nesting depth" at its own limit, before ours): what is
    # pinned is one error at the line, not a crash. Our own message: the test below.
    assert code == 1
    assert len(lines) == 1 and re.match(r"mesh\.yaml:2:\d+: ", lines[0]), lines


def test_nesting_past_the_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("version: 1\nx: " + "[" * 600 + "]" * 600 + "\n")  # RecursionError before
    assert validate(path, capsys) == (1, ["mesh.yaml:2:103: nested more than 100 levels deep"])


def test_aliases_cannot_stack_nesting_past_the_limit(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = "[" * 60 + "1" + "]" * 60
    path = tmp_path / "mesh.yaml"
    path.write_text(f"version: 1\na: &a {deep}\nb: &b {'[' * 60}*a{']' * 60}\n"
                    f"c: {'[' * 60}*b{']' * 60}\n")
    assert validate(path, capsys) == (1, [
        "mesh.yaml:2:46: nested more than 100 levels deep"])


def test_alias_to_its_own_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("version: 1\nx: &loop [1, *loop]\n")
    assert validate(path, capsys) == (1, [
        "mesh.yaml:2:14: alias *loop refers to the value it is part of (a value cannot "
        "contain itself)"])


def test_a_file_past_10_mb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("version: 1\n" + "#" * 10_000_000 + "\n")
    assert validate(path, capsys) == (1, [
        "mesh.yaml:1:1: the file is 10,000,012 bytes; a mesh or schema file may be at most "
        "10 MB"])


def test_a_schema_file_past_10_mb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "big.json").write_text("{}" + " " * 10_000_000)
    path, _ = write_mesh(tmp_path, "version: 1\nagents:\n  a:\n    handler: {mod}:echo\n"
                                   "    input: {$ref: big.json}\n", HANDLERS)
    assert validate(path, capsys) == (1, [
        "big.json:1:1: the file is 10,000,002 bytes; a mesh or schema file may be at most 10 MB"])


def test_a_file_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_bytes(b"version: 1\nname: \xff\xfe\n")
    assert validate(path, capsys) == (1, ["mesh.yaml:1:1: not UTF-8 text (byte 17: b'\\xff')"])


def test_ordinary_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    path, _ = write_mesh(tmp_path, """
        version: 1
        defaults: {timeout: 5s}
        agents:
          a:
            handler: {mod}:echo
            input: &text {type: object, properties: {text: {type: string}}}
            config: &common {style: short, level: 2}
          b:
            handler: {mod}:echo
            input: *text
            config: {<<: *common, extra: 1}
        """, HANDLERS)
    mesh = load_mesh(path)
    assert mesh.agents["b"].input is not None
    assert mesh.agents["b"].input.document == {"type": "object",
                                              "properties": {"text": {"type": "string"}}}
    assert mesh.agents["b"].spec.config == {"style": "short", "level": 2, "extra": 1}


def test_hot_reload_goes_on_after_an_alias_bomb(tmp_path: Path, nats_url: str,
                                                unique: str) -> None:
    good = f"version: 1\nname: bomb-{unique}\nagents:\n  bomb{unique}.echo:\n" \
           "    handler: {mod}:echo\n"
    path, module = write_mesh(tmp_path, good, HANDLERS)
    with UpProcess(path, nats_url) as up:
        start = len(up.lines)
        path.write_text(path.read_text() + "x-bomb:\n" + alias_bomb())
        up.wait_for("reload rejected: 1 problem", start=start)
        assert "aliases expand to more than 100,000 values (at *e)" in up.log
        start = len(up.lines)
        path.write_text(path.read_text().split("x-bomb:")[0]
                        + f"  bomb{unique}.more:\n    handler: {module}:echo\n")
        assert f"added bomb{unique}.more" in up.wait_for("reloaded:", start=start)


# -- $ref reads local files only ------------------------------------------------------

@pytest.fixture
def listener() -> Iterator[tuple[str, Callable[[], int]]]:
    """A local HTTP address that never answers, and how many connections it got."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)

    def connections() -> int:
        count = 0
        while True:
            try:
                client, _ = server.accept()
            except BlockingIOError:
                return count
            client.close()
            count += 1

    yield f"127.0.0.1:{server.getsockname()[1]}", connections
    server.close()


def ref_mesh(tmp_path: Path, schema: str) -> Path:
    path, _ = write_mesh(tmp_path, "version: 1\nagents:\n  a:\n    handler: {mod}:echo\n"
                                   f"    input: {schema}\n", HANDLERS)
    return path


URI_MESSAGE = ("{key} '{ref}' is a URI, and schemas are never fetched: only files (like "
               "schemas/ticket.json, relative to the file that refers to them) and '#...' "
               "references are read; save the schema as a file and refer to that")


def test_http_ref_is_an_error_and_never_fetched(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        listener: tuple[str, Callable[[], int]]) -> None:
    address, connections = listener
    ref = f"http://{address}/ticket.json"
    path = ref_mesh(tmp_path, f"{{$ref: '{ref}'}}")
    assert validate(path, capsys) == (1, [
        "mesh.yaml:5:19: agents.a.input.$ref: " + URI_MESSAGE.format(key="$ref", ref=ref)])
    assert connections() == 0


@pytest.mark.parametrize("ref", ["https://{address}/s.json", "file:///etc/hostname",
                                 "urn:example:ticket", "HTTP://{address}/s.json#/x"])
def test_any_uri_scheme_in_ref_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           listener: tuple[str, Callable[[], int]],
                                           ref: str) -> None:
    address, connections = listener  # a regression would try it, never anything remote
    ref = ref.format(address=address)
    path = ref_mesh(tmp_path, f"{{type: object, properties: {{t: {{$ref: '{ref}'}}}}}}")
    assert validate(path, capsys) == (1, [
        "mesh.yaml:5:50: agents.a.input.properties.t.$ref: "
        + URI_MESSAGE.format(key="$ref", ref=ref)])
    assert connections() == 0


def test_unknown_meta_schema_is_never_fetched(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        listener: tuple[str, Callable[[], int]]) -> None:
    address, connections = listener
    path = ref_mesh(tmp_path, f"{{$schema: 'http://{address}/meta', type: object}}")
    assert validate(path, capsys) == (1, [
        f"mesh.yaml:5:22: agents.a.input.$schema: unknown $schema 'http://{address}/meta': "
        "name a JSON Schema draft (like https://json-schema.org/draft/2020-12/schema); "
        "meta-schemas are never fetched"])
    assert connections() == 0


def test_uri_ref_inside_a_referenced_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        listener: tuple[str, Callable[[], int]]) -> None:
    address, connections = listener
    ref = f"http://{address}/x.json"
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "in.json").write_text(
        '{\n  "type": "object",\n  "properties": {\n    "x": {"$ref": "' + ref + '"}\n  }\n}\n')
    path = ref_mesh(tmp_path, "{$ref: schemas/in.json}")
    assert validate(path, capsys) == (1, [
        "schemas/in.json:4:19: properties.x.$ref: " + URI_MESSAGE.format(key="$ref", ref=ref)])
    assert connections() == 0


def test_local_refs_still_resolve(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "t.json").write_text(json.dumps({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object", "properties": {"p": {"$ref": "#/$defs/p"}},
        "$defs": {"p": {"type": "integer"}}}))
    path = ref_mesh(tmp_path, "{$ref: 'schemas/t.json#/properties/p'}")
    schema = load_mesh(path).agents["a"].input
    assert schema is not None
    assert (schema.validator.is_valid(3), schema.validator.is_valid("3")) == (True, False)


# -- the mesh's name names a NATS service ----------------------------------------------

@pytest.mark.parametrize("name", ["my mesh", "demo.v2", "a*", "mesh>", "'ünï'", "''"])
def test_mesh_name_must_be_a_service_name(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          name: str) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(f"version: 1\nname: {name}\n")
    shown = name.strip("'")
    assert validate(path, capsys) == (1, [
        f"mesh.yaml:2:7: name: invalid mesh name {shown!r}: use letters, digits, '_' and '-' "
        "(it is the NATS micro service name), like nlp-demo"])


def test_a_good_mesh_name(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("version: 1\nname: Support_Mesh-2\n")
    assert load_mesh(path).spec.name == "Support_Mesh-2"


def test_an_expression_nested_past_the_parser(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    deep = "(" * 3000 + "input" + ")" * 3000  # jmespath's parser recursed until it broke
    path, _ = write_mesh(tmp_path, "version: 1\nagents:\n  a: {handler: '{mod}:echo'}\n"
                                   "pipelines:\n  p:\n    steps:\n      - id: s\n"
                                   f"        when: '{deep}'\n        call: a\n", HANDLERS)
    assert validate(path, capsys) == (1, [
        "mesh.yaml:8:15: pipelines.p.steps[0].when: invalid expression "
        f"'{'(' * 57}...': nested too deeply"])


@pytest.mark.parametrize(("value", "problem"), [
    ("!custom x", "could not determine a constructor for the tag '!custom'"),
    ("!!float abc", "'abc' is not a valid !!float"),
    ("!!timestamp nope", "'nope' is not a valid !!timestamp"),
])
def test_a_tag_that_cannot_be_read(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   value: str, problem: str) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(f"version: 1\nname: {value}\n")  # each was a traceback before
    assert validate(path, capsys) == (1, [f"mesh.yaml:2:7: name: cannot read this value: "
                                          f"{problem}"])


@pytest.mark.parametrize("name", ["mesh.yaml", "examples/pipelines/mesh.yaml",
                                  "schemas/mesh.schema.json"])
def test_the_guarded_composer_gives_what_libyaml_gives(name: str) -> None:
    def shape(node: Any) -> Any:  # every node's kind, tag, value and both positions
        marks = (node.start_mark.line, node.start_mark.column, node.end_mark.line,
                 node.end_mark.column)
        if isinstance(node, yaml.MappingNode):
            return ("map", node.tag, marks, [(shape(k), shape(v)) for k, v in node.value])
        if isinstance(node, yaml.SequenceNode):
            return ("seq", node.tag, marks, [shape(v) for v in node.value])
        return ("scalar", node.tag, marks, node.value, node.style)

    text = (ROOT / name).read_text()
    assert shape(compose(text, fast=False)) == shape(yaml.compose(text, Loader=yaml.CSafeLoader))

"""`validate` finds meshes that are valid YAML and JSON Schema but can never work as meant.

Errors exit 1 and warnings do not; each finding is pinned at file:line:col.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cli import main
from tests.helpers import write_mesh

HANDLERS = """
    def echo(payload):
        return payload
"""


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["validate", "-f", str(path)])
    err = capsys.readouterr().err
    return code, [line.replace(str(path), "mesh.yaml") for line in err.splitlines()]


def mesh(tmp_path: Path, text: str) -> Path:
    path, _ = write_mesh(tmp_path, text, HANDLERS)
    return path


# -- payload schemas --------------------------------------------------------------------

def test_required_property_that_additional_properties_forbids(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = mesh(tmp_path, """
        version: 1
        agents:
          a:
            handler: {mod}:echo
            input:
              type: object
              additionalProperties: false
              properties:
                text: {type: string}
              required: [text, txet]
        """)
    assert validate(path, capsys) == (1, [
        "mesh.yaml:10:24: agents.a.input.required[1]: 'txet' is required, but "
        "additionalProperties: false forbids it (it is not under properties) (did you mean "
        "'text'?): no value can ever match this schema"])


def test_forbidden_required_in_a_nested_schema_of_a_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "out.json").write_text(
        '{"type": "object", "properties": {"meta": {\n'
        '  "type": "object", "additionalProperties": false,\n'
        '  "patternProperties": {"^x-": {}},\n'
        '  "required": ["x-ok", "id"]}}}\n')
    path = mesh(tmp_path, "version: 1\nagents:\n  a:\n    handler: {mod}:echo\n"
                          "    output: {$ref: out.json}\n")
    assert validate(path, capsys) == (1, [
        "out.json:4:24: properties.meta.required[1]: 'id' is required, but "
        "additionalProperties: false forbids it (it is not under properties): no value can "
        "ever match this schema"])


def test_keyword_typos_are_warnings_with_did_you_mean(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = mesh(tmp_path, """
        version: 1
        agents:
          a:
            handler: {mod}:echo
            input:
              type: object
              requried: [x]
              propertys: {x: {type: string}}
              properties:
                y: {type: string, minLenght: 2, x-note: kept}
            output: {ref: schemas/ticket.json}
        """)
    code, lines = validate(path, capsys)
    tail = ": JSON Schema ignores unknown keywords, so it checks nothing"
    assert lines == [
        "mesh.yaml:7:7: warning: agents.a.input.requried: unknown keyword 'requried' "
        "(did you mean 'required'?)" + tail,
        "mesh.yaml:8:7: warning: agents.a.input.propertys: unknown keyword 'propertys' "
        "(did you mean 'properties'?)" + tail,
        "mesh.yaml:10:27: warning: agents.a.input.properties.y.minLenght: unknown keyword "
        "'minLenght' (did you mean 'minLength'?)" + tail,
        "mesh.yaml:11:14: warning: agents.a.output.ref: unknown keyword 'ref' "
        "(did you mean '$ref'?)" + tail,
    ]
    assert code == 0  # warnings alone never fail validate


def test_warnings_are_shown_beside_errors(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = mesh(tmp_path, """
        version: 1
        agents:
          a:
            handler: {mod}:nope
          b:
            handler: {mod}:echo
            input: {type: object, requried: [x]}
        """)
    code, lines = validate(path, capsys)
    assert code == 1
    assert [line.split(": ")[1] for line in lines] == ["agents.a.handler", "warning"]

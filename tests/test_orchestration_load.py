"""Load-time checks of capabilities, broadcasts and state keys, each at file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cli import main
from tests.helpers import write_mesh

HANDLERS = """
    def echo(payload):
        return payload
"""

AGENTS = """
version: 1
agents:
  a.one:
    handler: {mod}:echo
    capabilities: [summarize, classify]
    input: {type: object}
  a.two:
    handler: {mod}:echo
    capabilities: [classify]
    input: {type: object}
external:
  far.away:
    capabilities: [translate]
"""


def validate(tmp_path: Path, text: str,
             capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    path, _ = write_mesh(tmp_path, text, HANDLERS)
    code = main(["validate", "-f", str(path)])
    captured = capsys.readouterr()
    lines = [line.replace(str(path), "mesh.yaml") for line in captured.err.splitlines()]
    return code, lines


def pipeline(steps: str) -> str:
    body = "\n".join("      " + line for line in steps.strip("\n").splitlines())
    return AGENTS + "pipelines:\n  p.main:\n    steps:\n" + body + "\n"


def test_capability_steps_of_declared_capabilities_load(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = validate(tmp_path, pipeline("""
- {id: s, capability: summarize, with: {text: hi}}
- {id: t, capability: translate}
- {id: v, broadcast: classify, within: 2s, min_answers: 2}
- {id: g, get_state: "counters/visits"}
- {id: w, set_state: {key: "${{ input.key }}", value: "${{ steps.v }}"}}
"""), capsys)
    assert (code, lines) == (0, [])


def test_an_unknown_capability(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = validate(tmp_path, pipeline("""
- {id: s, capability: sumarize}
- {id: b, broadcast: nobody}
"""), capsys)
    assert code == 1
    assert lines == [
        "mesh.yaml:17:29: pipelines.p.main.steps[0].capability: no agent of this file or of "
        "external: declares capability 'sumarize'; did you mean 'summarize'?",
        "mesh.yaml:18:28: pipelines.p.main.steps[1].broadcast: no agent of this file or of "
        "external: declares capability 'nobody'",
    ]


def test_bad_state_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = validate(tmp_path, pipeline("""
- {id: g, get_state: "no spaces"}
- {id: s, set_state: {key: ".hidden", value: 1}}
"""), capsys)
    assert code == 1
    assert lines == [
        "mesh.yaml:17:28: pipelines.p.main.steps[0].get_state: invalid state key 'no spaces': "
        "use letters, digits and - / _ = . (not starting or ending with '.')",
        "mesh.yaml:18:34: pipelines.p.main.steps[1].set_state.key: invalid state key '.hidden': "
        "use letters, digits and - / _ = . (not starting or ending with '.')",
    ]


def test_min_answers_above_what_can_answer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = validate(tmp_path, pipeline("""
- {id: v, broadcast: classify, min_answers: 3}
- {id: w, broadcast: summarize, min_answers: 2}
"""), capsys)
    assert code == 1
    assert lines == [
        "mesh.yaml:17:51: pipelines.p.main.steps[0].min_answers: min_answers is 3, but only 2 "
        "agents declare capability 'classify'",
        "mesh.yaml:18:52: pipelines.p.main.steps[1].min_answers: min_answers is 2, but only 1 "
        "agent declares capability 'summarize'",
    ]


def test_keys_that_do_not_apply_to_the_step(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = validate(tmp_path, pipeline("""
- {id: c, capability: summarize, within: 1s}
- {id: g, get_state: k, with: {a: 1}}
"""), capsys)
    assert code == 1
    assert lines == [
        "mesh.yaml:17:48: pipelines.p.main.steps[0].within: within does not apply to a "
        "capability step",
        "mesh.yaml:18:37: pipelines.p.main.steps[1].with: with does not apply to a get_state step",
    ]


def test_capability_names_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = validate(tmp_path, AGENTS.replace("[classify]", "[bad name]"), capsys)
    assert code == 1
    assert lines == [
        "mesh.yaml:9:20: agents.a.two.capabilities[0]: invalid name 'bad name' (it contains "
        "' '): use dot-separated segments of letters, digits, '_' and '-', like nlp.summarizer"]


def test_sharing_a_capability_with_other_input_schemas_warns(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = AGENTS.replace("[classify]\n    input: {type: object}",
                          "[classify]\n    input: {type: object, required: [text]}")
    code, lines = validate(tmp_path, text, capsys)
    assert code == 0
    assert lines == [
        "mesh.yaml:9:20: warning: agents.a.two.capabilities[0]: capability 'classify' is also "
        "declared by a.one with a different input schema: a call by capability reaches either"]

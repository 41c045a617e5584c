"""`mesh-runtime validate`: every problem as file:line:col: path: message, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cli import main
from tests.helpers import write_mesh

HANDLERS = """
    def echo(payload):
        return payload

    NOT_CALLABLE = 42
"""


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["validate", "-f", str(path)])
    err = capsys.readouterr().err
    lines = [line.replace(str(path), "mesh.yaml") for line in err.splitlines()]
    return code, lines


def agent_mesh(tmp_path: Path, agent_body: str, handlers: str = HANDLERS) -> Path:
    text = "version: 1\nagents:\n  a.echo:\n" + "\n".join(
        "    " + line for line in agent_body.strip("\n").splitlines())
    path, _ = write_mesh(tmp_path, text, handlers)
    return path


def test_valid_file_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = agent_mesh(tmp_path, "handler: {mod}:echo")
    assert main(["validate", "-f", str(path)]) == 0
    assert "ok (1 agents, 0 pipelines)" in capsys.readouterr().out


def test_demo_mesh_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parent.parent
    assert main(["validate", "-f", str(root / "mesh.yaml")]) == 0


def test_yaml_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("version: 1\nagents:\n  a: [1, 2\n")
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == ["mesh.yaml:4:1: YAML syntax error: expected ',' or ']', but got '<stream end>'"]


def test_unknown_key_suggests_the_right_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = agent_mesh(tmp_path, "handler: {mod}:echo\ndescriptin: hi")
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == ["mesh.yaml:5:5: agents.a.echo.descriptin: unknown key 'descriptin' "
                     "(did you mean 'description'?)"]


def test_missing_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = agent_mesh(tmp_path, "description: no handler here")
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == ["mesh.yaml:3:3: agents.a.echo: missing required key 'handler'"]


def test_duplicate_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = agent_mesh(tmp_path, "handler: {mod}:echo\nhandler: {mod}:other")
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == ["mesh.yaml:5:5: agents.a.echo.handler: duplicate key 'handler' "
                     "(first defined on line 4)"]


def test_wrong_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("version: 2\n")
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == ["mesh.yaml:1:10: version: unsupported version 2: this mesh-runtime "
                     "reads version 1"]


@pytest.mark.parametrize(("name", "hint"), [
    ("nlp.*", " (it contains '*')"), ("nlp sum", " (it contains ' ')"), ("a..b", ""),
])
def test_agent_name_must_be_a_subject_token(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            name: str, hint: str) -> None:
    path, _ = write_mesh(tmp_path, f"version: 1\nagents:\n  '{name}':\n    handler: {{mod}}:echo\n",
                         HANDLERS)
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == [f"mesh.yaml:3:3: agents.{name}: invalid name '{name}'{hint}: use "
                     "dot-separated segments of letters, digits, '_' and '-', like nlp.summarizer"]


@pytest.mark.parametrize(("handler", "message"), [
    ("no_colon", "handler must be 'module:attribute' (like 'handlers:summarize'), got 'no_colon'"),
    ("missing_module_xyz:f", "module 'missing_module_xyz' not found (looked in {folder}, the "
                             "mesh file's folder, then on Python's path)"),
    ("{mod}:nope", "module '{mod}' has no attribute 'nope'"),
    ("{mod}:NOT_CALLABLE", "'{mod}:NOT_CALLABLE' is not callable (it is a int)"),
])
def test_handler_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          handler: str, message: str) -> None:
    path, module = write_mesh(tmp_path, f"version: 1\nagents:\n  a:\n    handler: {handler}\n",
                              HANDLERS)
    code, lines = validate(path, capsys)
    assert code == 1
    message = message.replace("{mod}", module).replace("{folder}", str(tmp_path.resolve()))
    assert lines == [f"mesh.yaml:4:14: agents.a.handler: {message}"]


def test_handler_module_that_raises_on_import(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path, module = write_mesh(tmp_path, "version: 1\nagents:\n  a:\n    handler: {mod}:f\n",
                              "raise RuntimeError('boom')\n")
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == [f"mesh.yaml:4:14: agents.a.handler: module '{module}' failed to import: "
                     "RuntimeError: boom"]


def test_invalid_schema_points_at_the_bad_keyword(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = agent_mesh(tmp_path, """
handler: {mod}:echo
input:
  type: object
  properties:
    text: {type: strin}
    n: {type: integer, minimum: low}
""")
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == [
        "mesh.yaml:8:22: agents.a.echo.input.properties.text.type: invalid JSON Schema: 'strin' "
        "is not a JSON Schema type (use one of: array, boolean, integer, null, number, object, "
        "string)",
        "mesh.yaml:9:37: agents.a.echo.input.properties.n.minimum: invalid JSON Schema: 'low' "
        "is not of type 'number'",
    ]


def test_invalid_schema_in_a_referenced_file(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "out.json").write_text('{\n  "type": "object",\n  "required": "x"\n}\n')
    path = agent_mesh(tmp_path, "handler: {mod}:echo\noutput: {$ref: schemas/out.json}")
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == ["schemas/out.json:3:15: required: invalid JSON Schema: 'x' is not of type "
                     "'array'"]


def test_ref_file_that_does_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = agent_mesh(tmp_path, "handler: {mod}:echo\noutput: {$ref: schemas/nope.json}")
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == [f"mesh.yaml:5:20: agents.a.echo.output.$ref: $ref file not found: "
                     f"schemas/nope.json (looked for {tmp_path.resolve()}/schemas/nope.json)"]


def test_bad_duration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = agent_mesh(tmp_path, "handler: {mod}:echo\ntimeout: 5 seconds")
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == ["mesh.yaml:5:14: agents.a.echo.timeout: invalid duration '5 seconds': use a "
                     "number with a unit, like 250ms, 5s, 2m"]


def test_unset_variable_without_default(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESH_TEST_UNSET", raising=False)
    path, _ = write_mesh(tmp_path, "version: 1\nnats:\n  token: ${MESH_TEST_UNSET}\n")
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == ["mesh.yaml:3:10: nats.token: environment variable MESH_TEST_UNSET is not "
                     "set (set it, or give a default: ${MESH_TEST_UNSET:-value})"]


def test_variables_and_defaults_fill_in(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_TEST_TIMEOUT", "2s")
    path = agent_mesh(tmp_path, "handler: {mod}:echo\ntimeout: ${MESH_TEST_TIMEOUT}\n"
                                "concurrency: ${MESH_TEST_NONE:-3}")
    from runtime.load.loader import load_mesh

    mesh = load_mesh(path)
    assert (mesh.agents["a.echo"].timeout, mesh.agents["a.echo"].concurrency) == (2.0, 3)


def test_every_problem_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = write_mesh(tmp_path, """
        version: 1
        agents:
          a:
            handler: {mod}:nope
          b:
            handler: {mod}:echo
            input: {type: strin}
          c:
            handler: {mod}:echo
            timeout: soon
        """, HANDLERS)
    code, lines = validate(path, capsys)
    assert code == 1
    assert [line.split(": ")[1] for line in lines] == ["agents.a.handler", "agents.b.input.type",
                                                       "agents.c.timeout"]


def test_no_traceback_for_a_non_mapping_file(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("- just\n- a list\n")
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == ["mesh.yaml:1:1: a mesh file is a mapping with at least `version: 1` "
                     "(see `mesh-runtime schema`)"]


def test_a_missing_file_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = validate(tmp_path / "mesh.yaml", capsys)
    assert code == 1
    assert lines == ["mesh.yaml:1:1: no such file (run where your mesh.yaml is, or name it "
                     "with -f path/to/mesh.yaml)"]

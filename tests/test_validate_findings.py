"""`validate` finds meshes that are valid YAML and JSON Schema but can never work as meant.

Errors exit 1 and warnings do not; each finding is pinned at file:line:col.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cli import main
from tests.helpers import cli, write_mesh

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


# -- hints ------------------------------------------------------------------------------

@pytest.mark.parametrize(("files", "handler", "suggested"), [
    (["handlers_hint.py"], "handler_hint", "handlers_hint"),
    (["hintpkg/__init__.py", "hintpkg/agents/__init__.py", "hintpkg/agents/support.py"],
     "hintpkg.agents.suport", "hintpkg.agents.support"),
])
def test_module_not_found_suggests_a_module_nearby(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], files: list[str], handler: str,
        suggested: str) -> None:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("def f(p):\n    return p\n")
    path = mesh(tmp_path, f"version: 1\nagents:\n  a:\n    handler: {handler}:f\n")
    assert validate(path, capsys) == (1, [
        f"mesh.yaml:4:14: agents.a.handler: module '{handler}' not found; did you mean "
        f"'{suggested}'? (looked in {tmp_path.resolve()}, the mesh file's folder, then on "
        "Python's path)"])


@pytest.mark.parametrize("spec", ["./handlers_file.py:f", "handlers_file.py:f"])
def test_a_handler_file_path_says_to_write_the_module(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str) -> None:
    (tmp_path / "handlers_file.py").write_text("def f(p):\n    return p\n")
    path = mesh(tmp_path, f"version: 1\nagents:\n  a:\n    handler: {spec}\n")
    assert validate(path, capsys) == (1, [
        "mesh.yaml:4:14: agents.a.handler: handler names a module, not a file: write "
        f"'handlers_file:f' (not '{spec}')"])


@pytest.mark.parametrize(("text", "expected"), [
    ("version: 1\nagents:\n\ta:\n    handler: h:f\n",
     "mesh.yaml:3:1: YAML syntax error: found character '\\t' that cannot start any token "
     "(a tab: YAML indents with spaces only)"),
    ("version: 1\npipelines:\n  p:\n    steps:\n      - id: a\n        call: x\n"
     "        with: {text: ${{ input.text }}}\n",
     "mesh.yaml:7:23: YAML syntax error: expected ',' or '}', but got '{' (an unquoted ${{ }} "
     "inside {...} or [...]: quote it, like {text: \"${{ input.text }}\"})"),
    ("version: 1\nagents:\n  a:\n    handler: h:f\n   description: x\n",
     "mesh.yaml:5:4: YAML syntax error: expected <block end>, but found '<block mapping "
     "start>' (usually an odd indent: keys of one mapping line up exactly; or a ': ' inside "
     "a value that needs quotes)"),
    ("version: 1\nname: a: b\n",
     "mesh.yaml:2:8: YAML syntax error: mapping values are not allowed here (usually an odd "
     "indent: keys of one mapping line up exactly; or a ': ' inside a value that needs "
     "quotes)"),
])
def test_yaml_syntax_errors_say_the_usual_cause(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    assert validate(path, capsys) == (1, [expected])


def test_validate_in_a_fresh_process_sees_a_function_just_added(tmp_path: Path) -> None:
    # A running `up` caches handler modules; `validate` is a new process and must not.
    handlers = tmp_path / "handlers_new.py"
    handlers.write_text("def old(p):\n    return p\n")
    mesh_file = tmp_path / "mesh.yaml"
    mesh_file.write_text("version: 1\nagents:\n  a:\n    handler: handlers_new:old\n")
    assert cli("validate", cwd=tmp_path).returncode == 0
    handlers.write_text("def old(p):\n    return p\n\ndef new(p):\n    return p\n")
    mesh_file.write_text("version: 1\nagents:\n  a:\n    handler: handlers_new:new\n")
    done = cli("validate", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "mesh.yaml: ok (1 agents, 0 pipelines)\n")


# -- pipelines against the schemas of what they call -------------------------------------

PIPELINE_AGENTS = """
version: 1
agents:
  t.classify:
    handler: {mod}:echo
    input: {type: object, properties: {text: {type: string}}, required: [text]}
    output:
      type: object
      additionalProperties: false
      properties:
        category: {type: string, enum: [billing, tech]}
        score: {type: number}
      required: [category]
  t.route:
    handler: {mod}:echo
    input:
      type: object
      properties:
        category: {type: string}
        priority: {type: integer}
        flag: {type: boolean}
        note: {type: string}
      required: [category]
pipelines:
  t.p:
    input:
      type: object
      additionalProperties: false
      properties:
        text: {type: string}
        n: {type: [integer, "null"]}
        lang: {type: string, default: en}
      required: [text]
    steps:
"""


def pipeline_mesh(tmp_path: Path, steps: str, returns: str = "") -> Path:
    text = PIPELINE_AGENTS + "\n".join("      " + line for line in steps.strip().splitlines())
    if returns:
        text += "\n    returns:\n" + "\n".join("      " + line
                                                for line in returns.strip().splitlines())
    path, _ = write_mesh(tmp_path, text + "\n", HANDLERS)
    return path


def test_reading_a_parallel_branch_that_does_not_exist(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = pipeline_mesh(tmp_path, """
- id: info
  parallel:
    cls: {call: t.classify, with: {text: "${{ input.text }}"}}
- id: route
  call: t.route
  with: {category: "${{ steps.info.classify.category }}"}
""")
    assert validate(path, capsys) == (1, [
        "mesh.yaml:39:26: pipelines.t.p.steps[1].with.category: expression "
        "'steps.info.classify.category' reads steps.info.classify, but the parallel step 'info' "
        "has no branch 'classify' (its branches: cls)"])


def test_reading_fields_that_cannot_exist(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = pipeline_mesh(tmp_path, """
- id: first
  call: t.classify
  with: {text: "${{ input.txt }}"}
- id: each
  for_each: input.texts
  call: t.classify
  with: {text: "${{ item }}"}
""", returns="""
a: ${{ steps.first.categry }}
b: "${{ steps.each.category }}"
fine: ${{ steps.first.score }} and ${{ input.lang }}
""")
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == [
        "mesh.yaml:36:22: pipelines.t.p.steps[0].with.text: expression 'input.txt' reads "
        "input.txt, which cannot exist: the schema of input has no property 'txt' and allows "
        "no others; did you mean 'text'?",
        "mesh.yaml:38:19: pipelines.t.p.steps[1].for_each: expression 'input.texts' reads "
        "input.texts, which cannot exist: the schema of input has no property 'texts' and "
        "allows no others; did you mean 'text'?",
        "mesh.yaml:42:10: pipelines.t.p.returns.a: expression 'steps.first.categry' reads "
        "steps.first.categry, which cannot exist: the schema of steps.first has no property "
        "'categry' and allows no others; did you mean 'category'?",
        "mesh.yaml:43:10: pipelines.t.p.returns.b: expression 'steps.each.category' reads "
        "steps.each.category, but steps.each is a list (for_each gives one result per item): "
        "read steps.each[*].category for every item's, or steps.each[0].category",
    ]


def test_step_results_that_cannot_fit_the_callee_are_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = pipeline_mesh(tmp_path, """
- id: first
  call: t.classify
  with: {text: "${{ input.text }}"}
- id: route
  call: t.route
  with:
    category: ${{ steps.first.category }}
    priority: ${{ steps.first.category }}
    flag: ${{ input.n }}
    note: "n is ${{ input.n }}"
    extra: 1
""")
    code, lines = validate(path, capsys)
    assert code == 1
    assert lines == [
        "mesh.yaml:41:21: pipelines.t.p.steps[1].with.priority: ${{ steps.first.category }} "
        "gives string, but t.route's input takes integer for 'priority': it can never fit",
        "mesh.yaml:42:17: pipelines.t.p.steps[1].with.flag: ${{ input.n }} gives integer or "
        "null, but t.route's input takes boolean for 'flag': it can never fit",
    ]


def test_a_mapping_that_might_not_fit_is_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = pipeline_mesh(tmp_path, """
- id: first
  call: t.classify
  with: {text: "${{ input.text }}"}
- id: maybe
  when: input.n
  call: t.classify
  with: {text: "${{ input.lang }}"}
- id: route
  call: t.route
  with:
    category: ${{ steps.maybe.category }}
    priority: ${{ input.n }}
""")
    code, lines = validate(path, capsys)
    assert lines == [
        "mesh.yaml:44:21: warning: pipelines.t.p.steps[2].with.category: "
        "${{ steps.maybe.category }} may give null, but t.route's input takes string for "
        "'category'",
        "mesh.yaml:45:21: warning: pipelines.t.p.steps[2].with.priority: ${{ input.n }} may "
        "give null, but t.route's input takes integer for 'priority'",
    ]
    assert code == 0


def test_with_constants_that_cannot_fit_are_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = pipeline_mesh(tmp_path, """
- id: route
  call: t.route
  with: {category: 5, extra: 1}
""")
    code, lines = validate(path, capsys)
    assert code == 1
    assert [line.split(": ", 2)[2] for line in lines] == [
        "constant 5 for category does not match t.route's input schema: 5 is not of type "
        "'string'"]


def test_values_that_cannot_fit_an_enum(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    text = PIPELINE_AGENTS.replace(
        "        note: {type: string}",
        "        note: {type: string, enum: [tech, sales]}\n"
        "        tier: {type: string, enum: [gold, silver]}")
    text += """      - id: first
        call: t.classify
        with: {text: "${{ input.text }}"}
      - id: route
        call: t.route
        with:
          category: x
          note: ${{ steps.first.category }}
          tier: ${{ steps.first.category }}
"""
    path, _ = write_mesh(tmp_path, text, HANDLERS)
    code, lines = validate(path, capsys)
    assert lines == [
        "mesh.yaml:42:17: warning: pipelines.t.p.steps[1].with.note: "
        "${{ steps.first.category }} may give \"billing\", which t.route's input does not take "
        "for 'note' (it takes \"tech\", \"sales\")",
        "mesh.yaml:43:17: pipelines.t.p.steps[1].with.tier: ${{ steps.first.category }} gives "
        "one of \"billing\", \"tech\", but t.route's input takes only \"gold\", \"silver\" "
        "for 'tier': it can never fit",
    ]
    assert code == 1

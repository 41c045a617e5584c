"""`mesh-runtime test`: YAML test files run against a mesh on a NATS server of their own."""

from __future__ import annotations

import re
import textwrap
import time
from pathlib import Path

from tests.helpers import ROOT, cli, write_mesh

HANDLERS = """
    def echo(payload):
        return {"text": payload["text"], "n": payload.get("n", 0)}

    def boom(payload):
        raise RuntimeError("boom")
"""

MESH = """
    version: 1
    nats: {url: "nats://127.0.0.1:1"}   # never used: `test` starts its own server
    agents:
      t.echo:
        handler: {mod}:echo
        input: {type: object, properties: {text: {type: string}, n: {type: integer}}, required: [text]}
        output:
          type: object
          properties: {text: {type: string}, n: {type: integer}}
          required: [text, n]
      t.boom: {handler: "{mod}:boom"}
    pipelines:
      t.twice:
        input: {type: object, properties: {text: {type: string}}, required: [text]}
        steps:
          - {id: a, call: t.echo, with: {text: "${{ input.text }}", n: 1}}
          - {id: b, call: t.echo, with: {text: "${{ steps.a.text }}", n: 2}}
          - id: c
            call: t.echo
            with: {text: "${{ steps.b.text }}", n: 3}
            retry: {attempts: 2, backoff: 10ms}
"""


def _folder(tmp_path: Path, test_text: str, name: str = "t.test.yaml") -> Path:
    write_mesh(tmp_path, MESH, HANDLERS)
    (tmp_path / name).write_text(textwrap.dedent(test_text).lstrip())
    return tmp_path


def _lines(stdout: str) -> list[str]:
    """The output with timings taken out, so it can be pinned."""
    return [re.sub(r" \(\d+ ms\)$", "", re.sub(r" in \d+\.\d\ds$", "", line))
            for line in stdout.splitlines()]


def _fails_then_passes(folder: Path, error: str, edit: tuple[str, str], passed: int) -> None:
    """t.test.yaml has the one `error`; once `edit` fixes it, its `passed` cases pass."""
    result = cli("test", cwd=folder)
    assert _lines(result.stdout) == ["ERROR t.test.yaml", f"      {error}", "0 passed, 1 error"]
    path = folder / "t.test.yaml"
    path.write_text(path.read_text().replace(*edit))
    result = cli("test", cwd=folder)
    assert (result.returncode, _lines(result.stdout)[-1]) == (0, f"{passed} passed"), result.stdout


def test_every_example_and_the_demo_pass() -> None:
    shipped = {p.parent for p in (ROOT / "examples").glob("*/*.test.yaml")}
    assert shipped == {p.parent for p in (ROOT / "examples").glob("*/mesh.yaml")}
    assert (ROOT / "mesh.test.yaml").is_file()
    result = cli("test", cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.fullmatch(r"\d+ passed in \d+\.\d\ds", result.stdout.splitlines()[-1])


def test_passing_and_failing_cases_print_what_differed(tmp_path: Path) -> None:
    folder = _folder(tmp_path, """
        mesh: mesh.yaml
        cases:
          - name: equal
            call: t.echo
            input: {text: hi}
            expect: {output: {text: hi}}
          - name: differs
            call: t.echo
            input: {text: hi, n: 2}
            expect: {output: {text: ho, n: 2, extra: true}}
          - call: t.boom
            expect: {error: {code: timeout, message: boom}}
          - name: no expect means no error
            call: t.boom
          - name: asserts
            call: t.echo
            input: {text: hi}
            expect: {assert: ["output.n == `0`", "output.text == 'no'", "error"]}
    """)
    result = cli("test", cwd=folder)
    assert result.returncode == 1
    assert _lines(result.stdout) == [
        "ok    t.test.yaml::equal",
        "FAIL  t.test.yaml::differs",
        '      output.text: expected "ho", got "hi"',
        "      output.extra: missing (expected true)",
        "FAIL  t.test.yaml::case 3 (t.boom)",
        '      error.code: expected "timeout", got "handler_error"',
        '      error.message: expected "boom", got "RuntimeError: boom"',
        "FAIL  t.test.yaml::no expect means no error",
        "      expected output, got error handler_error: RuntimeError: boom",
        "FAIL  t.test.yaml::asserts",
        "      assert output.text == 'no': got false",
        "      assert error: got null",
        "1 passed, 4 failed",
    ]


def test_stubs_answer_in_order_and_say_when_they_run_out(tmp_path: Path) -> None:
    folder = _folder(tmp_path, """
        mesh: mesh.yaml
        cases:
          - name: one answer serves every call
            call: t.twice
            input: {text: x}
            stubs: {t.echo: {output: {text: stubbed, n: 9}}}
            expect: {output: {text: stubbed, n: 9}}
          - name: a list in order, the retry takes the third
            call: t.twice
            input: {text: x}
            stubs:
              t.echo:
                - {output: {text: one, n: 1}}
                - {output: {text: two, n: 2}}
                - {error: {code: handler_error, message: flaky}}
                - {output: {text: three, n: 3}}
            expect: {output: {text: three, n: 3}}
          - name: too few answers
            call: t.twice
            input: {text: x}
            stubs: {t.echo: [{output: {text: one, n: 1}}]}
            expect: {error: {code: step_failed}}
            # `assert` sees the error as the caller got it
          - name: the real agent is back after a stubbed case
            call: t.twice
            input: {text: real}
            expect: {output: {text: real, n: 3}}
    """)
    result = cli("test", str(folder / "t.test.yaml"), cwd=folder)
    assert result.returncode == 0, result.stdout
    assert _lines(result.stdout)[-1] == "4 passed"


def test_a_stub_that_runs_out_says_so(tmp_path: Path) -> None:
    folder = _folder(tmp_path, """
        mesh: mesh.yaml
        cases:
          - call: t.twice
            input: {text: x}
            stubs: {t.echo: [{output: {text: one, n: 1}}]}
    """)
    result = cli("test", cwd=folder)
    assert result.returncode == 1
    assert _lines(result.stdout)[1] == (
        "      expected output, got error step_failed: step 'b' failed: stub 't.echo' ran out of "
        "answers (1 given, this is call 2) {\"code\": \"handler_error\", \"message\": \"stub 't.echo' "
        "ran out of answers (1 given, this is call 2)\", \"step\": \"b\"}")


def test_mistakes_in_a_test_file_are_reported_at_line_and_column(tmp_path: Path) -> None:
    folder = _folder(tmp_path, """
        mesh: mesh.yaml
        cases:
          - call: t.ecko
            inptu: {}
            stubs:
              t.bom: {output: 1}
              t.echo: {output: {text: 1, n: 1}}
            expect: {assert: ["output.text =="]}
    """)
    (folder / "other.test.yaml").write_text("mesh: nowhere.yaml\ncases:\n  - call: t.echo\n"
                                            "    stubs: {t.echo: {output: 1, error: {code: x}}}\n")
    (folder / "syntax.test.yaml").write_text("mesh: mesh.yaml\ncases: [\n")
    result = cli("test", cwd=folder)
    assert result.returncode == 1
    assert _lines(result.stdout) == [
        "ERROR other.test.yaml",
        "      other.test.yaml:4:21: cases[0].stubs.t.echo: a stub answer has either `output` or `error`",
        "ERROR syntax.test.yaml",
        "      syntax.test.yaml:3:1: YAML syntax error: expected the node content, but found '<stream end>'",
        "ERROR t.test.yaml",
        "      t.test.yaml:4:5: cases[0].inptu: unknown key 'inptu' (did you mean 'input'?)",
        "0 passed, 3 errors",
    ]
    (folder / "t.test.yaml").write_text((folder / "t.test.yaml").read_text().replace("inptu", "input"))
    result = cli("test", "t.test.yaml", cwd=folder)
    assert _lines(result.stdout) == [
        "ERROR t.test.yaml",
        "      t.test.yaml:8:23: cases[0].expect.assert[0]: invalid expression 'output.text ==': "
        "incomplete expression at column 15",
        "0 passed, 1 error",
    ]
    (folder / "t.test.yaml").write_text((folder / "t.test.yaml").read_text().replace(
        '["output.text =="]', '["output.text"]'))
    result = cli("test", "t.test.yaml", cwd=folder)
    assert _lines(result.stdout) == [
        "ERROR t.test.yaml",
        "      t.test.yaml:3:11: cases[0].call: 't.ecko' is not an agent or pipeline of mesh.yaml; "
        "did you mean 't.echo'?",
        "      t.test.yaml:6:7: cases[0].stubs.t.bom: cannot stub 't.bom': not an agent of mesh.yaml; "
        "did you mean 't.boom'?",
        "      t.test.yaml:7:24: cases[0].stubs.t.echo.output: not an output 't.echo' could give: "
        '/text: 1 is not of type "string"',
        "0 passed, 1 error",
    ]


def test_a_missing_mesh_and_a_broken_mesh(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "mesh: ../nowhere/mesh.yaml\ncases: [{call: t.echo}]\n")
    result = cli("test", cwd=folder)
    assert _lines(result.stdout) == [
        "ERROR t.test.yaml",
        "      t.test.yaml:1:7: mesh: no mesh file at ../nowhere/mesh.yaml (a path relative to this "
        "test file)",
        "0 passed, 1 error",
    ]
    (folder / "t.test.yaml").write_text("mesh: mesh.yaml\ncases: [{call: t.echo}]\n")
    (folder / "mesh.yaml").write_text("version: 1\nagents:\n  t.echo: {handler: nowhere:f}\n")
    result = cli("test", cwd=folder)
    assert result.returncode == 1
    assert _lines(result.stdout)[:2] == [
        "ERROR t.test.yaml", "      mesh.yaml:3:21: agents.t.echo.handler: module 'nowhere' not "
        f"found (looked in {folder.resolve()}, the mesh file's folder, then on Python's path)"]


def test_meshes_in_two_folders_each_import_their_own_handlers(tmp_path: Path) -> None:
    for word in ("left", "right"):
        folder = tmp_path / word
        folder.mkdir()
        (folder / "handlers.py").write_text(f"def f(payload):\n    return {{'side': '{word}'}}\n")
        (folder / "mesh.yaml").write_text(f"version: 1\nagents:\n  {word}.f: {{handler: handlers:f}}\n")
        (folder / "f.test.yaml").write_text(
            f"cases: [{{call: {word}.f, expect: {{output: {{side: {word}}}}}}}]\n")
    result = cli("test", str(tmp_path))
    assert result.returncode == 0, result.stdout
    assert _lines(result.stdout)[-1] == "2 passed"


def test_nothing_to_run(tmp_path: Path) -> None:
    for hidden in (".venv/lib", "node_modules/pkg"):  # never searched
        (tmp_path / hidden).mkdir(parents=True)
        (tmp_path / hidden / "x.test.yaml").write_text("cases: [{call: x}]\n")
    result = cli("test", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", "error: no *.test.yaml files under .\n")
    result = cli("test", "missing.test.yaml", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, "error: no such file or folder: missing.test.yaml\n")


def test_external_agents_can_be_stubbed_and_called(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(textwrap.dedent("""
        version: 1
        external:
          far.away:
            output: {type: object, properties: {n: {type: integer}}, required: [n]}
        pipelines:
          near.by:
            steps: [{id: a, call: far.away, with: {x: 1}}]
            returns: {doubled: "${{ steps.a.n }}"}
    """))
    (tmp_path / "t.test.yaml").write_text(textwrap.dedent("""
        cases:
          - name: the pipeline, with the external agent stubbed
            call: near.by
            stubs: {far.away: {output: {n: 2}}}
            expect: {output: {doubled: 2}}
          - name: the stub itself
            call: far.away
            stubs: {far.away: {output: {n: 3}}}
            expect: {output: {n: 3}}
          - name: not stubbed
            call: far.away
    """))
    _fails_then_passes(
        tmp_path, "t.test.yaml:12:11: cases[2].call: 'far.away' is served by another process "
        "(external:): stub it to call it in a test",
        ("  - name: not stubbed\n    call: far.away\n", ""), passed=2)


def test_a_streaming_agent_can_be_stubbed(tmp_path: Path) -> None:
    write_mesh(tmp_path, """
        version: 1
        agents:
          s.words:
            handler: "{mod}:words"
            output: {type: object, properties: {w: {type: string}}, required: [w]}
    """, """
        async def words(payload):
            yield {"w": "real"}
    """)
    (tmp_path / "t.test.yaml").write_text(textwrap.dedent("""
        cases:
          - call: s.words
            stubs: {s.words: {output: [{w: a}, {w: b}]}}
            expect: {output: [{w: a}, {w: b}]}
          - call: s.words
            stubs: {s.words: {error: {code: handler_error, message: no words}}}
            expect: {error: {code: handler_error, message: no words}}
          - call: s.words
            stubs: {s.words: {output: [{w: 1}]}}
    """))
    _fails_then_passes(
        tmp_path, "t.test.yaml:10:31: cases[2].stubs.s.words.output: not an output 's.words' "
        'could give: /w: 1 is not of type "string"', ("[{w: 1}]", "[{w: c}]"), passed=3)


def test_a_stuck_sync_handler_does_not_hold_the_run(tmp_path: Path) -> None:
    write_mesh(tmp_path, """
        version: 1
        agents:
          h.stuck: {handler: "{mod}:stuck", timeout: 300ms}
    """, """
        import time

        def stuck(payload):
            time.sleep(60)
    """)
    (tmp_path / "t.test.yaml").write_text("cases: [{call: h.stuck, expect: {error: {code: timeout}}}]\n")
    started = time.monotonic()
    result = cli("test", cwd=tmp_path)
    assert time.monotonic() - started < 30  # not the handler's 60 s
    assert (result.returncode, _lines(result.stdout)[-1]) == (0, "1 passed"), result.stdout
    assert result.stderr.endswith(
        "note: 1 sync handler call(s) still running past their timeout; not waiting for them\n")


def test_a_stub_refuses_what_the_real_agent_would(tmp_path: Path) -> None:
    folder = _folder(tmp_path, """
        cases:
          - name: the pipeline sends t.echo a payload its schema refuses
            call: t.twice
            input: {text: x}
            stubs:
              t.echo: {output: {text: never, n: 0}}
            expect:
              error: {code: step_failed}
              assert: ["error.details.code == 'invalid_input'"]
    """)
    (folder / "mesh.yaml").write_text((folder / "mesh.yaml").read_text().replace(
        'n: 1}', 'n: "${{ input.count }}"}'))  # null at run time: t.echo wants an integer
    result = cli("test", cwd=folder)
    assert (result.returncode, _lines(result.stdout)[-1]) == (0, "1 passed"), result.stdout


def test_k_runs_the_matching_cases_only(tmp_path: Path) -> None:
    folder = _folder(tmp_path, """
        cases:
          - {name: first echo, call: t.echo, input: {text: a}}
          - {name: second ECHO, call: t.echo, input: {text: b}}
          - {name: boom, call: t.boom, expect: {error: {code: handler_error}}}
    """)
    result = cli("test", "-k", "echo", cwd=folder)
    assert (result.returncode, _lines(result.stdout)) == (0, [
        "ok    t.test.yaml::first echo", "ok    t.test.yaml::second ECHO", "2 passed, 1 deselected"])
    result = cli("test", "-k", "nothing", cwd=folder)
    assert (result.returncode, _lines(result.stdout), result.stderr) == (
        1, ["0 passed, 3 deselected"], "error: no case matches -k 'nothing'\n")

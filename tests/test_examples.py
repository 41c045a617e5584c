"""The examples work as their READMEs say: every documented `call` line prints what is shown.

Each README is parsed for its `mesh-runtime call NAME 'JSON'` lines (table rows and sh code
blocks) with the output documented beside or after them, so the READMEs and these tests
cannot drift apart. Each mesh is served by a real `mesh-runtime up` against the test
nats-server.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, UpProcess, cli

EXAMPLES = ROOT / "examples"
MESHES = {"summarizer": EXAMPLES / "summarizer" / "mesh.yaml",
          "handlers": EXAMPLES / "handlers" / "mesh.yaml"}
ERROR_CODES = {"invalid_input", "invalid_output", "handler_error", "timeout", "not_found",
               "overloaded", "expired", "step_failed", "invocation_mismatch"}

_CALL = re.compile(r"mesh-runtime call ([\w.-]+) '([^']*)'")
_SPAN = re.compile(r"`([^`]+)`")


@dataclass
class Documented:
    """One `mesh-runtime call` line of a README and the output it documents."""

    line: str
    name: str
    payload: Any
    outputs: list[Any] | None = None  # the reply, or a streaming agent's chunks in order
    error: str | None = None  # an error code, for a call documented to fail


def documented(readme: Path) -> tuple[list[Documented], dict[str, str]]:
    """The README's call lines with their outputs, and the text block after each other command.

    A table row's output is every JSON code span after the call; a code-block call line is
    either commented `# CODE: ...` with an error code or followed by a fenced block holding
    its output (one JSON document, or one JSON line per streamed chunk).
    """
    calls: list[Documented] = []
    blocks: dict[str, str] = {}  # command line -> the fenced block after it
    pending: Documented | str | None = None
    fence: str | None = None
    body: list[str] = []
    for raw in readme.read_text().splitlines():
        line = raw.strip()
        if line.startswith("```"):
            if fence is None:
                fence, body = line[3:], []
                continue
            if isinstance(pending, Documented) and fence in ("json", "text"):
                pending.outputs = _json_documents("\n".join(body))
                pending = None
            elif isinstance(pending, str) and fence in ("json", "text"):
                blocks[pending] = "\n".join(body)
                pending = None
            elif fence == "sh" and len(body) == 1 and not _CALL.search(body[0]):
                pending = body[0].split("#")[0].strip()  # a lone command: its output follows
            fence = None
            continue
        if fence is not None:
            body.append(raw)
            if fence == "sh" and (match := _CALL.search(line)):
                call = Documented(line, match[1], json.loads(match[2]))
                comment = re.search(r"#\s*([a-z_]+):", line[match.end():])
                if comment and comment[1] in ERROR_CODES:
                    call.error = comment[1]
                else:
                    pending = call
                calls.append(call)
        elif line.startswith("|") and (match := _CALL.search(line)):
            spans = _SPAN.findall(line[match.end():].split("`", 1)[1])  # after the call's span
            calls.append(Documented(line, match[1], json.loads(match[2]),
                                    [json.loads(s) for s in spans if s.startswith("{")]))
    assert fence is None, f"{readme}: a code block is not closed"
    return calls, blocks


def _json_documents(text: str) -> list[Any]:
    try:
        return [json.loads(text)]
    except ValueError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _run_documented(calls: list[Documented], nats_url: str) -> None:
    for call in calls:
        done = cli("call", call.name, json.dumps(call.payload), "--nats", nats_url, timeout=30)
        if call.error:
            assert done.returncode == 1, (call.line, done.stdout, done.stderr)
            assert json.loads(done.stderr)["code"] == call.error, call.line
        else:
            assert done.returncode == 0, (call.line, done.stderr)
            assert call.outputs, f"no documented output for: {call.line}"
            assert _json_documents(done.stdout) == call.outputs, call.line


@pytest.mark.parametrize("example", sorted(MESHES))
def test_example_mesh_validates(example: str) -> None:
    done = cli("validate", "-f", str(MESHES[example]))
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout


def test_summarizer_as_documented(nats_url: str) -> None:
    calls, blocks = documented(EXAMPLES / "summarizer" / "README.md")
    assert {c.name for c in calls} == {"summarizer.summarize"}
    assert sum(c.error is None for c in calls) >= 2 and sum(c.error is not None for c in calls) >= 1
    consumer_text = blocks["python examples/summarizer/consumer.py"]
    listing, _, reply = consumer_text.partition("summarizer.summarize replied:")

    with UpProcess(MESHES["summarizer"], nats_url, "--no-reload"):
        _run_documented(calls, nats_url)
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "summarizer" / "consumer.py"), nats_url],
            capture_output=True, text=True, timeout=30, cwd=ROOT)

    assert done.returncode == 0, done.stderr
    out, _, out_reply = done.stdout.partition("summarizer.summarize replied:")
    for line in listing.splitlines():  # the server may list other agents too
        assert line in out.splitlines(), (line, done.stdout)
    assert json.loads(out_reply) == json.loads(reply)


def test_consumer_says_when_the_agent_is_missing(nats_url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "summarizer" / "consumer.py"), nats_url],
        capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 1
    assert "mesh-runtime up -f examples/summarizer/mesh.yaml" in done.stderr


def test_handler_kinds_as_documented(nats_url: str) -> None:
    calls, _ = documented(EXAMPLES / "handlers" / "README.md")
    names = {c.name for c in calls}
    assert names == {"kinds.sync", "kinds.async", "kinds.pydantic", "kinds.stream", "kinds.context"}
    stream = next(c for c in calls if c.name == "kinds.stream")
    assert stream.outputs is not None and len(stream.outputs) > 1  # one line per chunk

    with UpProcess(MESHES["handlers"], nats_url, "--no-reload") as up:
        _run_documented(calls, nats_url)
        up.wait_for("asking kinds.async for a word count")  # ctx.logger reaches the up log

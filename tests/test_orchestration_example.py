"""examples/orchestration works as its README says, line by line."""

from __future__ import annotations

import json
import shlex
from typing import Any

from tests.helpers import UpProcess, cli
from tests.test_examples import EXAMPLES, _json_documents, _run_documented, documented

FOLDER = EXAMPLES / "orchestration"


def test_the_example_validates() -> None:
    done = cli("validate", "-f", str(FOLDER / "mesh.yaml"))
    assert done.returncode == 0, done.stderr


def _unordered(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A broadcast's answers without what differs from run to run: order and instance ids."""
    return sorted(({k: v for k, v in a.items() if k != "instance"} for a in answers),
                  key=lambda a: str(a["agent"]))


def test_the_help_desk_as_documented(fresh_nats: Any) -> None:
    url = fresh_nats.url  # a server of its own: the ticket numbers start at 1
    calls, blocks = documented(FOLDER / "README.md")
    assert [c.name for c in calls] == ["desk.handle"] * 4
    assert [c.error for c in calls] == [None, None, None, "invalid_input"]
    commands = [c for c in blocks if not c.startswith("mesh-runtime up")]
    assert len(commands) == 4
    with UpProcess(FOLDER / "mesh.yaml", url, "--no-reload"):
        _run_documented(calls, url)
        for command in commands:
            done = cli(*shlex.split(command)[1:], "--nats", url)
            assert done.returncode == 0, (command, done.stderr)
            shown, printed = _json_documents(blocks[command]), _json_documents(done.stdout)
            if " broadcast " in f" {command} ":
                assert [_unordered(p) for p in printed] == [_unordered(s) for s in shown]
                assert len({a["instance"] for a in printed[0]}) == 1
            else:
                assert printed == shown, command
            if "--capability" in command:
                assert done.stderr == "answered by desk.tech\n"


def test_the_readme_shows_the_graph_command() -> None:
    text = (FOLDER / "README.md").read_text()
    assert "mesh-runtime graph -f examples/orchestration/mesh.yaml" in text
    done = cli("graph", "-f", str(FOLDER / "mesh.yaml"))
    assert done.returncode == 0, done.stderr
    assert "broadcast classify" in done.stdout
    assert "→ capability answer.billing" in done.stdout
    assert json.dumps("set_state desk.customers.${{ input.customer }}")[1:-1] in done.stdout

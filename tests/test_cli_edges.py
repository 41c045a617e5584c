"""The command line where people trip: options anywhere, typos, pipes, Ctrl-C, odd input."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from runtime.nats.embedded import NatsServer
from tests.helpers import ROOT, UpProcess, cli, write_mesh

P = f"e{uuid.uuid4().hex[:6]}"

HANDLERS = """
    import asyncio

    def echo(payload):
        return payload

    def flaky(payload):
        raise RuntimeError("the dependency is down")

    async def slow(payload, ctx):
        ctx.logger.info("working on %s", payload["n"])
        await asyncio.sleep(60)
        return payload
"""

MESH = f"""
    version: 1
    agents:
      {P}.echo: {{handler: "{{mod}}:echo", capabilities: [{P}.cap]}}
"""


@pytest.fixture(scope="module")
def up(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    path, _ = write_mesh(tmp_path_factory.mktemp("edges"), MESH, HANDLERS)
    with UpProcess(path, nats_server.url, "--no-reload") as process:
        yield process


def test_options_may_follow_the_payload(up: UpProcess, nats_url: str) -> None:
    called = cli("call", f"{P}.echo", "--timeout", "2", '{"a": 1}', "--nats", nats_url)
    cast = cli("broadcast", f"{P}.cap", "--within", "2s", '{"b": 2}', "--nats", nats_url)
    assert (called.returncode, json.loads(called.stdout)) == (0, {"a": 1}), called.stderr
    assert cast.returncode == 0, cast.stderr
    assert [a["result"] for a in json.loads(cast.stdout)] == [{"b": 2}]


def test_a_mistyped_command_gets_a_did_you_mean() -> None:
    typed = cli("cal", "x")
    assert typed.returncode == 2
    assert typed.stderr.splitlines()[-1] == (
        "mesh-runtime: error: unknown command 'cal'; did you mean 'call'?")


def test_a_closed_pipe_ends_quietly(up: UpProcess, nats_url: str) -> None:
    reading, writing = os.pipe()
    os.close(reading)  # as `| head -1` does once it has its line
    try:
        done = subprocess.run([sys.executable, "-m", "runtime", "ls", "--nats", nats_url],
                              stdout=writing, stderr=subprocess.PIPE, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(writing)
    assert (done.returncode, done.stderr) == (141, "")


def _mcp(nats_url: str, **streams: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "runtime", "mcp", "--nats", nats_url],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, **streams)


def _line(stream: Any, timeout: float = 20) -> bytes:
    """The next line from a pipe (or pty), waited for up to `timeout` seconds."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], deadline - time.monotonic())
        if not ready:
            break
        chunk = os.read(stream if isinstance(stream, int) else stream.fileno(), 1)
        if not chunk:
            break
        data += chunk
    return data


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


def _own_terminal() -> None:
    """In the child: a session of its own, whose controlling terminal is its stdin."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_mcp_in_a_terminal_ends_on_ctrl_c(nats_url: str) -> None:
    terminal, tty = pty.openpty()
    settings = termios.tcgetattr(tty)
    settings[3] &= ~termios.ECHO  # what is typed is not shown back: the answers alone
    termios.tcsetattr(tty, termios.TCSANOW, settings)
    server = _mcp(nats_url, stdin=tty, stdout=tty, stderr=subprocess.PIPE,
                  preexec_fn=_own_terminal)
    os.close(tty)
    try:
        assert _line(server.stderr).startswith(b"mcp: serving the mesh at ")
        os.write(terminal, json.dumps(INITIALIZE).encode() + b"\n")
        assert json.loads(_line(terminal))["id"] == 1  # it is reading the terminal now
        os.write(terminal, b"\x03")  # Ctrl-C, typed: the terminal sends SIGINT
        code = server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        os.close(terminal)
    assert code == 130


def test_mcp_answers_a_call_nested_500_deep_with_an_error(nats_url: str) -> None:
    server = _mcp(nats_url, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert server.stdin is not None and server.stdout is not None

    def send(message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        server.stdin.write(text.encode() + b"\n")  # type: ignore[union-attr]
        server.stdin.flush()  # type: ignore[union-attr]

    try:
        send(INITIALIZE)
        assert json.loads(_line(server.stdout))["id"] == 1
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        deep = '{"a": ' * 500 + "1" + "}" * 500
        send('{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": '
             f'{{"name": "{P}_echo", "arguments": {deep}}}}}')
        answer = json.loads(_line(server.stdout))
    finally:
        server.kill()
        server.wait()
    assert answer == {"jsonrpc": "2.0", "id": 2, "error": {
        "code": -32602,
        "message": "the message is nested more than 100 levels deep; flatten the arguments"}}


def test_init_writes_handlers_that_say_saves_are_picked_up(tmp_path: Path) -> None:
    assert cli("init", cwd=tmp_path).returncode == 0
    docstring = (tmp_path / "handlers.py").read_text().split('"""')[1]
    assert "restart" not in docstring.replace("no restart needed", "")
    assert "picks up every save of this file" in docstring


def test_init_refuses_to_write_through_a_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    result = cli("init", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (1, (
        "error: mesh.yaml already exists; init never overwrites a file (name a new folder: "
        "mesh-runtime init my-mesh)\n"))
    assert not (tmp_path / "elsewhere.yaml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.yaml"]


def test_a_nats_url_from_a_variable_set_but_empty_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text("version: 1\nnats:\n  url: ${MESH_NATS_URL}\nagents: {}\n")
    result = cli("up", cwd=tmp_path, env={"MESH_NATS_URL": "", "NATS_URL": ""})
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        "mesh.yaml:3:8: nats.url: is empty (a ${VAR} set to the empty string?); write "
        "`embedded` for a server of `up`'s own, or a nats:// URL"]


def test_a_syntax_error_in_a_handler_file_is_logged_once(tmp_path: Path, nats_url: str) -> None:
    agents = "".join(f"  {P}.s{i}: {{handler: '{{mod}}:echo'}}\n" for i in range(12))
    path, module = write_mesh(tmp_path, "version: 1\nagents:\n" + agents, HANDLERS)
    with UpProcess(path, nats_url) as up:
        start = len(up.lines)
        (tmp_path / f"{module}.py").write_text("def echo(payload:\n    return payload\n")
        up.wait_for("reload rejected", start=start)
        said = up.lines[start:]
    assert [line for line in said if "SyntaxError" in line] == [
        f"error: mesh.yaml:3:{len(P) + 18}: agents.{P}.s0.handler: module '{module}' failed to "
        f"import: {module}.py:1:9: SyntaxError: '(' was never closed (the handler module of 12 "
        f"agents: {', '.join(f'{P}.s{i}' for i in range(10))} and 2 more)"]
    assert [line for line in said if line.startswith("error")] == [
        line for line in said if "SyntaxError" in line]


async def test_a_stop_says_what_it_waits_for_and_a_second_ctrl_c_ends_it_at_once(
        tmp_path: Path, nats_url: str) -> None:
    path, _ = write_mesh(tmp_path, f"version: 1\nagents:\n  {P}.slow: {{handler: '{{mod}}:slow'}}\n",
                         HANDLERS)
    up = UpProcess(path, nats_url, "--no-reload", new_session=True)
    try:
        up.wait_for("ready:")
        nc = await nats.connect(nats_url)
        try:
            asking = [asyncio.ensure_future(nc.request(f"mesh.agent.{P}.slow",
                                                       json.dumps({"n": n}).encode(), timeout=60))
                      for n in range(2)]
            await asyncio.to_thread(up.wait_for, "working on 0")
            await asyncio.to_thread(up.wait_for, "working on 1")
            os.killpg(up.process.pid, signal.SIGINT)  # Ctrl-C: the terminal's whole group
            waiting = await asyncio.to_thread(up.wait_for, "stopping:")
            os.killpg(up.process.pid, signal.SIGINT)  # and again
            abandoned = await asyncio.to_thread(up.wait_for, "stopping at once")
            code = await asyncio.to_thread(up.process.wait, 10)
        finally:
            for ask in asking:
                ask.cancel()
            await nc.close()
    finally:
        up.stop()
    assert waiting == ("stopping: finishing 2 requests in flight (at most 30s; Ctrl-C again to "
                       "stop at once)")
    assert abandoned == "warning: stopping at once: 2 requests in flight abandoned"
    assert code == 130


RETRIED = f"""
    version: 1
    agents:
      {P}.flaky: {{handler: "{{mod}}:flaky"}}
    pipelines:
      {P}.tries:
        steps:
          - id: one
            call: {P}.flaky
            retry: {{attempts: 3, backoff: 50ms}}
            on_error: {{value: null}}
"""


async def test_an_agent_that_keeps_failing_logs_less_and_less_often(
        tmp_path: Path, nats_url: str) -> None:
    path, _ = write_mesh(tmp_path, RETRIED, HANDLERS)
    with UpProcess(path, nats_url, "--no-reload") as up:
        nc = await nats.connect(nats_url)
        calls, started = 0, time.monotonic()
        try:
            while time.monotonic() - started < 3.5:  # failures for 3.5 s, a pipeline retrying
                reply = await nc.request(f"mesh.agent.{P}.tries", b"{}", timeout=10)
                assert json.loads(reply.data) is None
                calls += 1
        finally:
            await nc.close()
        last = await asyncio.to_thread(up.wait_for, "in the last 4 seconds", 20)
    lines = [line for line in up.lines if f"[{P}.flaky]" in line]
    assert len(lines) == 4, lines  # not one a second: after 1, 2 and 4 seconds
    assert lines[0].startswith(f"warning: [{P}.flaky] request ")
    assert re.search(r" failed: handler_error: RuntimeError: the dependency is down"
                     r" \(trace [0-9a-f]{32}\)$", lines[0]), lines[0]
    assert [re.sub(r"\d+ more", "N more", line) for line in lines[1:]] == [
        f"warning: [{P}.flaky] N more requests failed with handler_error in the last {span}"
        for span in ("second", "2 seconds", "4 seconds")]
    counted = 1 + sum(int(re.search(r"(\d+) more", line)[1]) for line in lines[1:])  # type: ignore[index]
    assert counted == 3 * calls and lines[-1] == last

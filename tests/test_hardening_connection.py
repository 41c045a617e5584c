"""The connection: credentials never shown, a refused login said so, never running deaf."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from runtime.core import protocol as p
from runtime.nats.caller import call_agent
from runtime.nats.client import catalog
from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, cli, free_port, write_mesh

HANDLERS = '''
    async def echo(payload):
        return payload
'''

MESH = """
    version: 1
    name: connection-test
    agents:
      c.echo:
        handler: {mod}:echo
"""
AUTH_REFUSED = "authorization violation: check the user, password, token or creds"
USERS = """
authorization {{
  users = [
{users}
  ]
}}
"""


def users_conf(path: Path, **users: str) -> Path:
    lines = "\n".join(f"    {{user: {u}, password: {pw}}}" for u, pw in users.items())
    path.write_text(USERS.format(users=lines))
    return path


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[NatsServer]:
    conf = users_conf(tmp_path / "users.conf", alice="s3cret-pw", bob="bobs-pw")
    with NatsServer(extra_args=["-c", str(conf)]) as server:
        yield server


def test_ready_line_masks_the_password(tmp_path: Path, secured: NatsServer) -> None:
    path, _ = write_mesh(tmp_path, MESH, HANDLERS)
    url = f"nats://alice:s3cret-pw@127.0.0.1:{secured.port}"
    with UpProcess(path, url, "--no-reload") as up:
        line = up.wait_for("ready:")
    assert line == f"ready: 1 agents, 0 pipelines on nats://***:***@127.0.0.1:{secured.port}"
    assert "s3cret-pw" not in up.log


def test_a_refused_login_says_so_at_once(tmp_path: Path, secured: NatsServer) -> None:
    path, _ = write_mesh(tmp_path, MESH, HANDLERS)
    result = cli("up", "-f", str(path), "--nats",
                 f"nats://alice:wrong-pw@127.0.0.1:{secured.port}", "--no-reload", timeout=8)
    assert result.returncode == 2
    assert result.stderr == (f"error: cannot connect to NATS at nats://***:***@127.0.0.1:"
                             f"{secured.port}: {AUTH_REFUSED}\n")


@pytest.mark.parametrize("command", [["ls"], ["call", "c.echo", "{}"]])
def test_call_and_ls_say_a_login_was_refused(secured: NatsServer, command: list[str]) -> None:
    result = cli(*command, "--nats", f"nats://alice:wrong-pw@127.0.0.1:{secured.port}")
    assert result.returncode == 2
    assert result.stderr == (f"error: cannot connect to NATS at nats://***:***@127.0.0.1:"
                             f"{secured.port}: {AUTH_REFUSED}\n")


@pytest.mark.parametrize("command", [["ls"], ["call", "c.echo", "{}"]])
def test_an_unreachable_url_is_shown_without_its_password(command: list[str]) -> None:
    result = cli(*command, "--nats", "nats://alice:s3cret-pw@127.0.0.1:1")
    assert result.returncode == 2
    assert "s3cret-pw" not in result.stderr
    assert result.stderr.startswith("error: cannot reach NATS at nats://***:***@127.0.0.1:1 (")


def test_up_unreachable_is_shown_without_its_token(tmp_path: Path) -> None:
    path, _ = write_mesh(tmp_path, MESH, HANDLERS)
    result = cli("up", "-f", str(path), "--nats", "nats://tok3n-secret@127.0.0.1:1",
                 "--no-reload")
    assert result.returncode == 2
    assert "tok3n-secret" not in result.stderr
    assert result.stderr.startswith("error: cannot connect to NATS at nats://***@127.0.0.1:1: ")


@pytest.mark.parametrize("bad", ["a b", "a.*", "a.>", "a\n", ""])
def test_call_with_a_name_that_is_no_subject_is_a_clear_error(bad: str, nats_url: str) -> None:
    result = cli("call", bad, "{}", "--nats", nats_url)
    assert result.returncode == 2
    shown = bad.replace("\n", "\\n")
    assert result.stderr.startswith(f"error: invalid name '{shown}'")
    assert "Traceback" not in result.stderr


def test_up_exits_when_nats_closes_the_connection_for_good(
        tmp_path: Path, secured: NatsServer) -> None:
    # Revoking the user that `up` logs in as makes the server send -ERR 'Authorization
    # Violation' and close: nats-py then closes for good, without reconnecting.
    path, _ = write_mesh(tmp_path, MESH, HANDLERS)
    up = UpProcess(path, f"nats://alice:s3cret-pw@127.0.0.1:{secured.port}", "--no-reload")
    try:
        up.wait_for("ready:")
        users_conf(tmp_path / "users.conf", bob="bobs-pw")
        assert secured.process is not None
        secured.process.send_signal(signal.SIGHUP)  # the server reloads its config
        code = up.process.wait(15)
    finally:
        up.stop()
    assert code == 3
    assert up.wait_for("error:") == (
        f"error: NATS closed the connection for good ({AUTH_REFUSED}); exiting so that a "
        "supervisor can restart mesh-runtime up")
    assert "Traceback" not in up.log


def test_a_worker_the_server_closed_is_replaced_and_up_serves_on(tmp_path: Path) -> None:
    # A reload that subscribes past the server's max_subscriptions gets -ERR 'Maximum
    # Subscriptions Exceeded', and nats-py closes the connection for good. That worker
    # exits 3; the supervisor, not the worker, decides whether NATS is gone: it starts a
    # new worker (NATS is reachable), so `up` keeps running and says why.
    conf = tmp_path / "limits.conf"
    conf.write_text("max_subscriptions: 6\n")
    path, module = write_mesh(tmp_path, MESH, HANDLERS)
    with NatsServer(extra_args=["-c", str(conf)]) as server:
        up = UpProcess(path, server.url)
        try:
            up.wait_for("ready:")
            more = "".join(f"  c.more{i}:\n    handler: {module}:echo\n" for i in range(10))
            path.write_text(path.read_text() + more)
            line = up.wait_for("error:")
            stopped = up.wait_for("stopped unexpectedly")
            assert up.process.poll() is None
        finally:
            code = up.stop()
    assert line.startswith("error: NATS closed the connection for good (nats: ")
    assert "maximum subscriptions exceeded" in line.lower()
    assert stopped.endswith("stopped unexpectedly (exit code 3); starting a new one")
    assert code == 0


async def test_after_a_restart_with_an_empty_store_the_catalog_and_card_come_back(
        tmp_path: Path) -> None:
    port = free_port()
    path, _ = write_mesh(tmp_path, MESH, HANDLERS)
    first = NatsServer(port=port, store_dir=str(tmp_path / "store-1")).start()
    up = UpProcess(path, f"nats://127.0.0.1:{port}", "--no-reload")
    try:
        up.wait_for("ready:")
        first.stop()
        up.wait_for("disconnected from NATS")
        with NatsServer(port=port, store_dir=str(tmp_path / "store-2")) as second:
            start = len(up.lines)
            up.wait_for("reconnected to NATS", start=start)
            line = up.wait_for("wrote back", start=start)
            nc = await nats.connect(second.url)
            try:
                entries = await catalog(nc) or []
                card = await (await nc.jetstream().key_value(p.REGISTRY_BUCKET)).get("c.echo")
                reply = await call_agent(nc, "c.echo", {"after": "restart"}, 5)
            finally:
                await nc.close()
    finally:
        up.stop()
        first.stop()
    assert line.endswith("wrote back 1 catalog entry and card the server had lost: c.echo")
    assert [e["name"] for e in entries] == ["c.echo"]
    assert json.loads(card.value)["name"] == "c.echo"
    assert reply == {"after": "restart"}

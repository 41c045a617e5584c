"""Nothing of `up`'s process tree outlives it: not after `kill -9`, not a handler's fork."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from runtime.supervise.startup import port_taken
from tests.helpers import ROOT, UpProcess, command_line, descendants, free_port, running, write_mesh

# A handler module that starts a process of its own when it is imported.
FORKS_AT_IMPORT = """
    import os, subprocess, sys
    CHILD = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(os.environ["FORK_LOG"], "a") as log:
        log.write(f"{os.getpid()} {CHILD.pid}\\n")

    def echo(payload):
        return payload
"""

MESH = """
    version: 1
    name: tree
    NATS
    agents:
      tree.echo: {handler: '{mod}:echo'}
"""


def gone_within(pids: list[int], seconds: float, port: int | None = None) -> list[str]:
    """The processes of `pids` still running (and the port, if still taken) after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        left = [f"{pid}: {command_line(pid)}" for pid in pids if running(pid)]
        if port is not None and port_taken(port):
            left.append(f"port {port} taken")
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def forked(log: Path, timeout: float = 30) -> list[tuple[int, int]]:
    """(importing process, its child) for each import of the forking handler module so far."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().endswith("\n"):
            pairs = [line.split() for line in log.read_text().splitlines()]
            return [(int(a), int(b)) for a, b in pairs]
        time.sleep(0.05)
    raise AssertionError("the handler module was never imported")


def tree_with_spare(pid: int, timeout: float = 30) -> list[int]:
    """`up`'s tree once its spare worker (spawned after `ready:`) is there too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tree = descendants(pid)
        if sum("runtime up" in command_line(p) for p in tree) == 2:  # the worker and the spare
            return tree
        time.sleep(0.05)
    raise AssertionError(f"no spare worker: {[command_line(p) for p in descendants(pid)]}")


def test_kill_9_of_up_ends_its_whole_tree_and_frees_the_port_within_5_seconds(
        tmp_path: Path) -> None:
    port = free_port()
    embedded = f"nats: {{embedded: {{port: {port}}}}}"
    path, _ = write_mesh(tmp_path, MESH.replace("NATS", embedded), FORKS_AT_IMPORT)
    env = {"FORK_LOG": str(tmp_path / "forks"), "NATS_URL": ""}
    up = UpProcess(path, None, env=env)
    up.wait_for("ready:")
    [(worker, child)] = forked(tmp_path / "forks")
    tree = tree_with_spare(up.process.pid)
    commands = [command_line(pid) for pid in tree]
    assert {worker, child} <= set(tree)
    assert sum("nats-server" in c for c in commands) == 1  # the embedded server
    up.process.kill()
    up.process.wait()
    assert gone_within(tree, 5.0, port) == []
    with UpProcess(path, None, env=env) as again:  # the next `up` gets the same port
        assert f"127.0.0.1:{port}" in again.wait_for("ready:")


def test_what_a_handler_forks_at_import_ends_when_up_stops(tmp_path: Path, nats_url: str) -> None:
    path, _ = write_mesh(tmp_path, MESH.replace("NATS", ""),
                         FORKS_AT_IMPORT)
    with UpProcess(path, nats_url, "--no-reload", env={"FORK_LOG": str(tmp_path / "forks")}):
        [(worker, child)] = forked(tmp_path / "forks")
        assert running(child)
    assert gone_within([worker, child], 5.0) == []


def test_a_worker_still_importing_when_up_is_killed_ends_with_what_it_forked(
        tmp_path: Path, nats_url: str) -> None:
    slow = textwrap.dedent(FORKS_AT_IMPORT) + "\nimport time\ntime.sleep(600)\n"
    path, _ = write_mesh(tmp_path, MESH.replace("NATS", ""), slow)
    up = UpProcess(path, nats_url, env={"FORK_LOG": str(tmp_path / "forks")})
    [(worker, child)] = forked(tmp_path / "forks")  # importing: sleeping inside the import
    tree = descendants(up.process.pid)
    assert {worker, child} <= set(tree)
    up.process.kill()
    up.process.wait()
    assert gone_within(tree, 5.0) == []


LEAKY_TEST = """
    import subprocess

    def test_leaves_a_process_behind():
        subprocess.Popen(["sleep", "7"], start_new_session=True)
"""


def test_the_suite_fails_when_a_process_it_started_outlives_it(tmp_path: Path) -> None:
    (tmp_path / "test_leaky.py").write_text(textwrap.dedent(LEAKY_TEST))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.leftovers", "-p", "no:cacheprovider",
         "-p", "no:randomly", str(tmp_path / "test_leaky.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    assert "1 process(es) the suite started outlived it (now killed):" in run.stdout
    assert "sleep 7" in run.stdout

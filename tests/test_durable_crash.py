"""The crash test: two `up` processes, a durable 3-step pipeline, `kill -9` of the owner's
whole process tree while a step runs, for each step. Every finished step ran exactly once,
the step in flight at most twice with the same idempotency key, the run ends ok, and the
caller that was waiting gets the answer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats
import pytest

from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, write_mesh

# Each step writes `start` and `done` lines (step, idempotency key, pid) to a file; the step
# under test waits for a gate file, so the test can kill its process while it runs.
HANDLERS = """
    import os, time
    from pathlib import Path

    def _step(name, payload, ctx):
        log = Path(os.environ["STEPS_LOG"])
        with log.open("a") as f:
            f.write(f"start {name} {ctx.idempotency_key} {os.getpid()}\\n")
        if name == os.environ.get("HOLD_STEP"):
            gate = Path(os.environ["GATE"])
            while not gate.exists():
                time.sleep(0.02)
        with log.open("a") as f:
            f.write(f"done {name} {ctx.idempotency_key} {os.getpid()}\\n")
        return {"path": payload.get("path", []) + [name]}

    def one(payload, ctx):
        return _step("a", payload, ctx)

    def two(payload, ctx):
        return _step("b", payload, ctx)

    def three(payload, ctx):
        return _step("c", payload, ctx)
"""

MESH = """
    version: 1
    name: crash-{own}
    health: {interval: 300ms}
    agents:
      s.one: {handler: "{mod}:one"}
      s.two: {handler: "{mod}:two"}
      s.three: {handler: "{mod}:three"}
    pipelines:
      s.flow:
        durable: true
        timeout: 60s
        steps:
          - {id: a, call: s.one}
          - {id: b, call: s.two, with: {path: "${{ steps.a.path }}"}}
          - {id: c, call: s.three, with: {path: "${{ steps.b.path }}"}}
"""


def start(folder: Path, url: str, own: str, env: dict[str, str]) -> UpProcess:
    folder.mkdir()
    path, _ = write_mesh(folder, MESH.replace("{own}", own), HANDLERS)
    up = UpProcess(path, url, "--no-reload", env=env)
    up.wait_for("ready:")
    return up


def lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


async def wait_for_line(log: Path, want: list[str], timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not any(line[:2] == want for line in lines(log)):
        assert loop.time() < deadline, f"no {want} in {lines(log)}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("held", ["a", "b", "c"])
async def test_kill_9_of_the_owner_during_a_step_loses_no_work(
        fresh_nats: NatsServer, tmp_path: Path, held: str) -> None:
    log, gate = tmp_path / "steps.log", tmp_path / "gate"
    env = {"STEPS_LOG": str(log), "GATE": str(gate), "HOLD_STEP": held}
    owner = start(tmp_path / "owner", fresh_nats.url, "owner", env)
    other = None
    nc = await nats.connect(fresh_nats.url)
    try:
        caller = asyncio.create_task(nc.request(
            "mesh.agent.s.flow", b"{}", timeout=40,
            headers={"X-Mesh-Request-Id": "crash-run-" + held}))
        await wait_for_line(log, ["start", held])
        other = start(tmp_path / "other", fresh_nats.url, "other", env)
        owner.crash()  # kill -9 of `up` and its workers, mid-step
        gate.touch()
        reply = await caller
        assert reply.headers and reply.headers.get("X-Mesh-Status") == "ok", reply.data
        assert json.loads(reply.data) == {"path": ["a", "b", "c"]}
        other.wait_for("resuming durable run crash-run-" + held)
    finally:
        await nc.close()
        owner.stop()
        if other is not None:
            other.stop()
    done = [(line[1], line[2]) for line in lines(log) if line[0] == "done"]
    started = [(line[1], line[2]) for line in lines(log) if line[0] == "start"]
    run = "crash-run-" + held
    for step in "abc":
        key = f"{run}/{step}"
        finished = [k for s, k in done if s == step]
        if step < held:  # finished before the crash: never called again
            assert finished == [key]
            assert [k for s, k in started if s == step] == [key]
        elif step == held:  # in flight: at most twice, with the same key both times
            assert [k for s, k in started if s == step] == [key, key]
            assert finished == [key]
        else:
            assert finished == [key]

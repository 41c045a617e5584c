"""`mesh-runtime runs ...` and async runs, as a user drives them: real `up`, real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from nats.aio.client import Client

from runtime.core.protocol import MeshError
from runtime.nats.caller import call_agent
from runtime.nats.embedded import NatsServer
from runtime.runs.reader import follow_run
from tests.helpers import ROOT, UpProcess, cli, write_mesh

HANDLERS = """
    import asyncio

    def upper(payload):
        return {"text": payload["text"].upper()}

    async def slow(payload, ctx):
        await ctx.progress(0.5, "half way")
        await asyncio.sleep(payload.get("sleep", 0.2))
        return {"slept": payload.get("sleep", 0.2), "run": ctx.run_id}

    async def starter(payload, ctx):
        return {"started": await ctx.call("rc.long", {"sleep": 0.05}, wait=False)}
"""

MESH = """
    version: 1
    name: runs-cli
    agents:
      rc.upper: {handler: "{mod}:upper"}
      rc.slow: {handler: "{mod}:slow", timeout: 1h}
      rc.starter: {handler: "{mod}:starter"}
    pipelines:
      rc.short:
        steps:
          - {id: first, call: rc.upper}
          - {id: second, call: rc.upper, with: {text: "${{ steps.first.text }}!"}}
      rc.long:
        timeout: 1h
        steps:
          - {id: wait, call: rc.slow, timeout: 1h}
          - {id: after, call: rc.upper, with: {text: "done"}}
"""


@pytest.fixture(scope="module")
def up(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    path, _ = write_mesh(tmp_path_factory.mktemp("runs-cli"), MESH, HANDLERS)
    with UpProcess(path, nats_server.url, "--no-reload", "--workers", "1") as process:
        yield process


def runs(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("runs", *args, "--nats", url)


async def ended(nc: Client, run: str) -> None:
    async for _ in follow_run(nc, run):
        pass


async def test_ls_and_show_tell_what_a_run_did(nc: Client, nats_url: str) -> None:
    run = "rc-" + uuid.uuid4().hex
    assert await call_agent(nc, "rc.short", {"text": "hi"}, 10, run) == {"text": "HI!"}
    await ended(nc, run)
    listed = runs(nats_url, "ls", "rc.short", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    [row] = [r for r in rows if r["run"] == run]
    assert row["status"] == "ok" and row["pipeline"] == "rc.short" and row["steps_done"] == 2
    assert row["duration_ms"] > 0 and row["error"] is None and row["step"] is None
    table = runs(nats_url, "ls")
    assert run in table.stdout and "rc.short" in table.stdout
    shown = runs(nats_url, "show", run)
    assert shown.returncode == 0, shown.stderr
    assert f"run {run}  rc.short  ok" in shown.stdout
    assert "step_finished  second" in shown.stdout and '{"text":"HI!"}' in shown.stdout
    data = json.loads(runs(nats_url, "show", run, "--json").stdout)
    assert data["status"] == "ok" and data["input"] == {"text": "hi"}
    assert data["output"] == {"text": "HI!"}
    assert [e["event"] for e in data["events"]][:2] == ["run_started", "step_started"]


async def test_a_failed_run_shows_its_error(nc: Client, nats_url: str) -> None:
    run = "rc-" + uuid.uuid4().hex
    with pytest.raises(MeshError):
        await call_agent(nc, "rc.short", {"text": 5}, 10, run)
    await ended(nc, run)
    rows = json.loads(runs(nats_url, "ls", "--status", "failed", "--json").stdout)
    [row] = [r for r in rows if r["run"] == run]
    assert row["error"]["code"] == "step_failed"


def test_show_of_an_unknown_or_invalid_run_is_a_clear_error(up: UpProcess, nats_url: str) -> None:
    unknown = runs(nats_url, "show", "no-such-run-" + uuid.uuid4().hex[:8])
    assert unknown.returncode == 1
    assert "error: no run no-such-run-" in unknown.stderr and "in the journal" in unknown.stderr
    for bad in ("a.b", "a b", "*", ">", "x" * 200):
        result = runs(nats_url, "show", bad)
        assert result.returncode == 1, bad
        assert "invalid run id" in result.stderr and "Traceback" not in result.stderr


async def test_async_call_watch_and_wait(nc: Client, nats_url: str) -> None:
    started = cli("call", "rc.long", '{"sleep": 1.0}', "--async", "--nats", nats_url)
    assert started.returncode == 0, started.stderr
    run = started.stdout.strip()
    watch = subprocess.Popen(
        [sys.executable, "-m", "runtime", "runs", "watch", run, "--nats", nats_url],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 0, err
    assert "run_started" in out and "50% half way" in out and "run_finished" in out
    assert out.index("step_started   wait") < out.index("step_finished  after")
    waited = runs(nats_url, "wait", run)
    assert waited.returncode == 0
    assert json.loads(waited.stdout) == {"text": "DONE"}


async def test_an_async_run_outlives_its_callers_timeout(nc: Client, nats_url: str) -> None:
    reply = await nc.request("mesh.agent.rc.long", b'{"sleep": 1.5}', timeout=5, headers={
        "X-Mesh-Async": "true", "X-Mesh-Timeout": "0.5"})
    assert reply.headers["X-Mesh-Status"] == "ok"
    body = json.loads(reply.data)
    assert body["status"] == "running"
    waited = runs(nats_url, "wait", body["run"], "--timeout", "30s")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout) == {"text": "DONE"}


async def test_cancel_ends_a_run_and_its_caller_gets_cancelled(nc: Client, nats_url: str,
                                                               up: UpProcess) -> None:
    run = "rc-" + uuid.uuid4().hex
    import asyncio

    caller = asyncio.create_task(call_agent(nc, "rc.long", {"sleep": 30}, 60, run))
    async for record in follow_run(nc, run):  # until the step is running
        if record.event and record.event["event"] == "step_started":
            break
    cancelled = await asyncio.to_thread(runs, nats_url, "cancel", run)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"cancelled run {run}"
    with pytest.raises(MeshError) as caught:
        await caller
    assert caught.value.code == "cancelled"
    await ended(nc, run)
    shown = json.loads((await asyncio.to_thread(runs, nats_url, "show", run, "--json")).stdout)
    assert shown["status"] == "cancelled"
    again = await asyncio.to_thread(runs, nats_url, "cancel", run)
    assert again.returncode == 1 and "not running anywhere (status: cancelled)" in again.stderr


async def test_wait_false_starts_a_run_from_a_handler(nc: Client, nats_url: str) -> None:
    answer = await call_agent(nc, "rc.starter", {}, 10)
    run = answer["started"]
    waited = runs(nats_url, "wait", run)
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout) == {"text": "DONE"}
    result = runs(nats_url, "show", run, "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    progress = [e for e in shown["events"] if e["event"] == "step_progress"]
    assert progress and progress[0]["agent"] == "rc.slow" and progress[0]["progress"] == 0.5


async def test_call_with_a_request_id_names_the_run(nc: Client, nats_url: str) -> None:
    run = "rc-cli-" + uuid.uuid4().hex[:8]
    called = cli("call", "rc.short", '{"text": "a"}', "--request-id", run, "--nats", nats_url)
    assert called.returncode == 0, called.stderr
    await ended(nc, run)
    shown = runs(nats_url, "show", run)
    assert shown.returncode == 0 and f"run {run}  rc.short  ok" in shown.stdout
    bad = cli("call", "rc.short", "{}", "--request-id", "a.b", "--nats", nats_url)
    assert bad.returncode == 2 and "--request-id takes" in bad.stderr
    agent = cli("call", "rc.upper", '{"text": "a"}', "--async", "--nats", nats_url)
    assert agent.returncode == 1
    assert json.loads(agent.stderr)["code"] == "invalid_input"
    assert "X-Mesh-Async applies to pipelines" in agent.stderr

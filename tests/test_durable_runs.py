"""Durable runs as a user drives them: waits and signals across a restart of every `up`,
definitions pinned across reloads, sleeps, run keys, `runs resume`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, cli, write_mesh

HANDLERS = """
    import os
    from pathlib import Path

    def _count(name, ctx):
        with Path(os.environ["STEPS_LOG"]).open("a") as f:
            f.write(f"{name} {ctx.idempotency_key}\\n")

    def charge(payload, ctx):
        _count("charge", ctx)
        return {"charged": payload.get("amount", 1)}

    def ship(payload, ctx):
        _count("ship", ctx)
        if Path(os.environ["STEPS_LOG"] + ".fail").exists():
            raise RuntimeError("the carrier is down")
        return {"shipped": payload}
"""

MESH = """
    version: 1
    name: durable-{own}
    health: {interval: 300ms}
    agents:
      d.charge: {handler: "{mod}:charge"}
      d.ship: {handler: "{mod}:ship"}
    pipelines:
      d.order:
        durable: true
        run_key: ${{ input.order_id }}
        steps:
          - {id: charge, call: d.charge, with: {amount: "${{ input.amount }}"}}
          - {id: approval, wait: {signal: approve, timeout: 1h}}
          - {id: ship, call: d.ship, with: {VERSION: "${{ steps.approval.by }}"}}
      d.nap:
        durable: true
        steps:
          - {id: charge, call: d.charge}
          - {id: nap, sleep: 3s}
          - {id: ship, call: d.ship, with: {after: nap}}
      d.late:
        durable: true
        steps:
          - {id: answer, wait: {signal: never, timeout: 1s}, on_error: {value: none came}}
          - {id: ship, call: d.ship, with: {answer: "${{ steps.answer }}"}}
      d.quick:
        durable: true
        steps:
          - {id: charge, call: d.charge}
          - {id: ship, call: d.ship, with: {n: "${{ steps.charge.charged }}"}}
"""


def mesh_text(version: str) -> str:
    return MESH.replace("VERSION", version)


def start(folder: Path, url: str, own: str, env: dict[str, str],
          version: str = "v1") -> UpProcess:
    folder.mkdir(exist_ok=True)
    path, _ = write_mesh(folder, mesh_text(version).replace("{own}", own), HANDLERS)
    up = UpProcess(path, url, "--no-reload", env=env)
    up.wait_for("ready:")
    return up


def counted(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


async def parked(nc: Client, run: str, start: Any) -> None:
    """Start a run (`start()`), and return once its wait or sleep step has parked it."""
    seen: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on(msg: Any) -> None:
        if not seen.done():
            seen.set_result(None)

    sub = await nc.subscribe(f"mesh.run.{run}.step_waiting", cb=on)
    await start()
    await asyncio.wait_for(seen, 20)
    await sub.unsubscribe()


async def start_async(nc: Client, name: str, payload: dict[str, Any], run: str) -> None:
    reply = await nc.request(f"mesh.agent.{name}", json.dumps(payload).encode(), timeout=10,
                             headers={"X-Mesh-Request-Id": run, "X-Mesh-Async": "true"})
    assert json.loads(reply.data) == {"run": run, "status": "running"}


def test_a_wait_survives_every_up_and_finishes_on_its_own_definition(
        fresh_nats: NatsServer, tmp_path: Path) -> None:
    url, log = fresh_nats.url, tmp_path / "steps.log"
    env = {"STEPS_LOG": str(log)}
    first = start(tmp_path / "first", url, "first", env, "v1")
    run = "order-run-1"

    async def begin() -> None:
        nc = await nats.connect(url)
        try:
            await parked(nc, run, lambda: start_async(
                nc, "d.order", {"order_id": "o-1", "amount": 5}, run))
        finally:
            await nc.close()

    try:
        asyncio.run(begin())
        waiting = json.loads(cli("runs", "ls", "--status", "waiting", "--json",
                                 "--nats", url).stdout)
        assert [r["run"] for r in waiting] == [run]
    finally:
        assert first.stop() == 0, first.log  # every `up` is gone while the run is parked
    # The file changes while the run is parked: it finishes on the definition it started on.
    second = start(tmp_path / "second", url, "second", env, "v2")
    try:
        wrong = cli("runs", "signal", run, "nope", "--nats", url)
        assert wrong.returncode == 1
        assert wrong.stderr.strip() == (f"error: pipeline 'd.order' of run {run} waits for no "
                                        "signal 'nope' (it waits for: approve)")
        unknown = cli("runs", "signal", "no-such-run", "approve", "--nats", url)
        assert unknown.returncode == 1
        assert "no run no-such-run in the journal" in unknown.stderr
        sent = cli("runs", "signal", run, "approve", '{"by": "ana"}', "--nats", url)
        assert sent.returncode == 0, sent.stderr
        waited = cli("runs", "wait", run, "--timeout", "30", "--nats", url)
        assert waited.returncode == 0, waited.stderr
        assert json.loads(waited.stdout) == {"shipped": {"v1": "ana"}}
        second.wait_for(f"durable run {run} woke on signal 'approve'")
    finally:
        second.stop()
    assert counted(log) == [f"charge {run}/charge", f"ship {run}/ship"]
    ended = cli("runs", "signal", run, "approve", "--nats", url)
    assert ended.returncode == 1
    assert ended.stderr.strip() == f"error: run {run} has ended (ok): it takes no signals"


def test_a_sleep_wakes_on_another_up_after_a_crash(fresh_nats: NatsServer,
                                                   tmp_path: Path) -> None:
    url, log = fresh_nats.url, tmp_path / "steps.log"
    env = {"STEPS_LOG": str(log)}
    first = start(tmp_path / "first", url, "first", env)
    run = "nap-run-1"

    async def begin() -> None:
        nc = await nats.connect(url)
        try:
            await parked(nc, run, lambda: start_async(nc, "d.nap", {}, run))
        finally:
            await nc.close()

    try:
        asyncio.run(begin())
    finally:
        first.crash()
    second = start(tmp_path / "second", url, "second", env)
    try:
        waited = cli("runs", "wait", run, "--timeout", "30", "--nats", url)
        assert waited.returncode == 0, waited.stderr
        assert json.loads(waited.stdout) == {"shipped": {"after": "nap"}}
        # A wait whose signal does not come in time: `timeout`, here turned into a value.
        late = cli("call", "d.late", "{}", "--request-id", "late-run", "--nats", url)
        assert json.loads(late.stdout) == {"shipped": {"answer": "none came"}}, late.stderr
    finally:
        second.stop()
    assert counted(log) == [f"charge {run}/charge", f"ship {run}/ship", "ship late-run/ship"]


def test_run_keys_start_one_run_per_key(fresh_nats: NatsServer, tmp_path: Path) -> None:
    url, log = fresh_nats.url, tmp_path / "steps.log"
    up = start(tmp_path / "up", url, "up", {"STEPS_LOG": str(log)})

    async def calls() -> list[Any]:
        nc = await nats.connect(url)
        try:
            answers = []
            for i in range(3):
                reply = await nc.request("mesh.agent.d.quick", b"{}", timeout=10, headers={
                    "X-Mesh-Request-Id": f"key-run-{i}", "X-Mesh-Run-Key": "order-77"})
                answers.append((reply.headers or {}).get("X-Mesh-Status"))
                answers.append(json.loads(reply.data))
            for _ in range(2):  # the same request id again (a retry): the same run's answer
                reply = await nc.request("mesh.agent.d.quick", b"{}", timeout=10,
                                         headers={"X-Mesh-Request-Id": "same-id"})
                answers.append(json.loads(reply.data))
            return answers
        finally:
            await nc.close()

    try:
        answers = asyncio.run(calls())
    finally:
        up.stop()
    result = {"shipped": {"n": 1}}
    assert answers == ["ok", result, "ok", result, "ok", result, result, result]
    assert counted(log) == ["charge key-run-0/charge", "ship key-run-0/ship",
                            "charge same-id/charge", "ship same-id/ship"]


def test_runs_resume_retries_a_failed_run_from_the_step_that_failed(
        fresh_nats: NatsServer, tmp_path: Path) -> None:
    url, log = fresh_nats.url, tmp_path / "steps.log"
    up = start(tmp_path / "up", url, "up", {"STEPS_LOG": str(log)})
    fail = Path(str(log) + ".fail")
    fail.touch()
    run = "resume-run-1"

    async def call() -> Any:
        nc = await nats.connect(url)
        try:
            return await nc.request("mesh.agent.d.quick", b"{}", timeout=10,
                                    headers={"X-Mesh-Request-Id": run})
        finally:
            await nc.close()

    try:
        failed = asyncio.run(call())
        assert (failed.headers or {}).get("X-Mesh-Status") == "error"
        assert json.loads(cli("runs", "show", run, "--json", "--nats", url).stdout)[
            "status"] == "failed"
        fail.unlink()
        resumed = cli("runs", "resume", run, "--nats", url)
        assert resumed.returncode == 0, resumed.stderr
        waited = cli("runs", "wait", run, "--timeout", "30", "--nats", url)
        assert json.loads(waited.stdout) == {"shipped": {"n": 1}}, waited.stderr
        again = cli("runs", "resume", run, "--nats", url)
        assert again.returncode == 1
        assert again.stderr.strip() == (f"error: run {run} is ok: only a failed or cancelled "
                                        "run is resumed")
    finally:
        up.stop()
    assert counted(log) == [f"charge {run}/charge", f"ship {run}/ship", f"ship {run}/ship"]


def test_a_reload_while_parked_and_a_cancel_of_a_parked_run(fresh_nats: NatsServer,
                                                            tmp_path: Path) -> None:
    url, log = fresh_nats.url, tmp_path / "steps.log"
    folder = tmp_path / "live"
    folder.mkdir()
    path, _ = write_mesh(folder, mesh_text("v1").replace("{own}", "live"), HANDLERS)
    up = UpProcess(path, url, env={"STEPS_LOG": str(log)})  # reload on: the file is watched
    up.wait_for("ready:")
    runs = ["reload-run", "cancel-run"]

    async def begin() -> None:
        nc = await nats.connect(url)
        try:
            for i, run in enumerate(runs):
                await parked(nc, run, lambda run=run, i=i: start_async(
                    nc, "d.order", {"order_id": f"o-{i}", "amount": 5}, run))
        finally:
            await nc.close()

    try:
        asyncio.run(begin())
        mark = len(up.lines)
        path.write_text(path.read_text().replace("{v1:", "{v2:"))
        assert "changed d.order" in up.wait_for("reloaded:", 20, mark)
        cancelled = cli("runs", "cancel", "cancel-run", "--nats", url)
        assert cancelled.returncode == 0, cancelled.stderr
        up.wait_for("parked durable run cancel-run cancelled")
        assert cli("runs", "signal", "reload-run", "approve", '{"by": "bo"}',
                   "--nats", url).returncode == 0
        waited = cli("runs", "wait", "reload-run", "--timeout", "30", "--nats", url)
        assert json.loads(waited.stdout) == {"shipped": {"v1": "bo"}}, waited.stderr
        shown = json.loads(cli("runs", "show", "cancel-run", "--json", "--nats", url).stdout)
        assert shown["status"] == "cancelled"
    finally:
        up.stop()

"""Durable runs against hostile input: a forged lease (compare-and-set decides: the run is
never lost, never recorded twice), signals for runs that do not exist, and a journal whose
stream was deleted (the run fails with a clear error, `up` keeps serving)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats

from runtime.nats.embedded import NatsServer
from runtime.runs.reader import read_run
from tests.test_durable_crash import lines, start, wait_for_line


async def test_a_forged_lease_never_makes_a_run_run_twice_at_once(
        fresh_nats: NatsServer, tmp_path: Path) -> None:
    log, gate = tmp_path / "steps.log", tmp_path / "gate"
    up = start(tmp_path / "up", fresh_nats.url, "one",
               {"STEPS_LOG": str(log), "GATE": str(gate), "HOLD_STEP": "b"})
    nc = await nats.connect(fresh_nats.url)
    run = "forged-run"
    try:
        caller = asyncio.create_task(nc.request(
            "mesh.agent.s.flow", b"{}", timeout=30, headers={"X-Mesh-Request-Id": run}))
        await wait_for_line(log, ["start", "b"])
        # A forged record of step a, claiming a lease newer than any: a resume ignores it.
        forged = {"run": run, "pipeline": "s.flow", "trace_id": None, "event": "step_finished",
                  "at": 1.0, "step": "a", "attempt": 1, "output": {"path": ["evil"]},
                  "lease": 10**12}
        await nc.jetstream().publish(f"mesh.run.{run}.step_finished",
                                     json.dumps(forged).encode())
        kv = await nc.jetstream().key_value("mesh-run-leases")
        # Another client says a dead instance owns the run: some `up` claims it (CAS) and
        # resumes it; the first owner, finding the lease changed, records nothing more.
        await kv.put(run, json.dumps({"instance": "0badc0ffee00", "pipeline": "s.flow",
                                      "state": "running", "wake": None,
                                      "signal": None}).encode())
        up.wait_for(f"resuming durable run {run}")
        gate.touch()
        reply = await caller
        assert json.loads(reply.data) == {"path": ["a", "b", "c"]}
        events = [r.event for r in await read_run(nc, run) if r.event]
        finished = [e for e in events if e["event"] == "step_finished"]
        assert [e["step"] for e in finished if e["step"] != "b"] == ["a", "a", "c"]
        # b: the new owner's record; the first owner, finishing b as it lost the lease, may
        # have stored its own (superseded: an older lease) but went no further.
        b = [e for e in finished if e["step"] == "b"]
        assert 1 <= len(b) <= 2 and len({e["lease"] for e in b}) == len(b)
        assert [e["event"] for e in events].count("run_finished") == 1
    finally:
        await nc.close()
        up.stop()
    done = [line[1] for line in lines(log) if line[0] == "done"]
    assert done.count("a") == 1 and done.count("c") == 1
    assert [line[2] for line in lines(log) if line[1] == "b"] == [f"{run}/b"] * 4  # 2 x start+done


async def test_garbage_on_signal_subjects_and_a_deleted_journal(
        fresh_nats: NatsServer, tmp_path: Path) -> None:
    log, gate = tmp_path / "steps.log", tmp_path / "gate"
    gate.touch()
    up = start(tmp_path / "up", fresh_nats.url, "one",
               {"STEPS_LOG": str(log), "GATE": str(gate), "HOLD_STEP": "none"})
    nc = await nats.connect(fresh_nats.url)
    try:
        js = nc.jetstream()
        # Signals nobody waits for, and one that is not JSON: stored, handed out, dropped.
        await js.publish("mesh.run.no-such-run.signal.approve", b"{}")
        await js.publish("mesh.run.no-such-run.signal.x", b"\xff not json")
        ok = await nc.request("mesh.agent.s.flow", b"{}", timeout=10)
        assert json.loads(ok.data) == {"path": ["a", "b", "c"]}
        await js.delete_stream("MESH_RUNS")
        gone = await nc.request("mesh.agent.s.flow", b"{}", timeout=10,
                                headers={"X-Mesh-Request-Id": "after-delete"})
        assert (gone.headers or {}).get("X-Mesh-Status") == "error"
        error = json.loads(gone.data)
        assert error["code"] == "handler_error"
        assert error["message"].startswith("durable run after-delete cannot be recorded: ")
        assert "JetStream stream MESH_RUNS" in error["message"]
        up.wait_for("durable run after-delete cannot be recorded")
        # `up` still serves: its agents answer; its durable pipelines say why they cannot.
        echo = await nc.request("mesh.agent.s.one", b"{}", timeout=10)
        assert json.loads(echo.data) == {"path": ["a"]}
        assert up.process.poll() is None
    finally:
        await nc.close()
        up.stop()

"""A stream trigger on a durable pipeline, across a crash: two `up` processes, one message,
`kill -9` of the owner's whole process tree while step b runs. The other `up` resumes the
run (never starts a second one), every finished step ran once, and the message is acked
once, only after the run has ended: never nak'ed, never dead-lettered. The message's second
delivery joins the resumed run, is kept alive past `ack_wait`, and (the run parks in a sleep
longer than the pipeline's timeout) asks again while the run is still running."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
from nats.aio.msg import Msg

from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, write_mesh
from tests.test_durable_crash import HANDLERS, lines, wait_for_line
from tests.test_triggers import _consumer, _until

MESH = """
    version: 1
    name: trig-durable-{own}
    health: {interval: 300ms}
    agents:
      s.one: {handler: "{mod}:one"}
      s.two: {handler: "{mod}:two"}
      s.three: {handler: "{mod}:three"}
    pipelines:
      s.flow:
        durable: true
        timeout: 15s
        triggers:
          - stream: {stream: TD, subject: "td.in", ack_wait: 2s, backoff: 100ms}
        steps:
          - {id: a, call: s.one}
          - {id: b, call: s.two, with: {path: "${{ steps.a.path }}"}}
          - {id: c, call: s.three, with: {path: "${{ steps.b.path }}"}}
          - {id: rest, sleep: 18s}
"""
RUN = "s_flow-TD-1-1"  # the request id of the first delivery of stream sequence 1


def start(folder: Path, url: str, own: str, env: dict[str, str]) -> UpProcess:
    folder.mkdir()
    path, _ = write_mesh(folder, MESH.replace("{own}", own), HANDLERS)
    up = UpProcess(path, url, "--no-reload", env=env)
    up.wait_for("trigger started: s.flow stream TD")
    return up


async def test_a_stream_triggered_durable_run_survives_a_kill_9_and_is_acked_after_it_ended(
        fresh_nats: NatsServer, tmp_path: Path) -> None:
    log, gate = tmp_path / "steps.log", tmp_path / "gate"
    env = {"STEPS_LOG": str(log), "GATE": str(gate), "HOLD_STEP": "b"}
    seen: list[tuple[float, str, bytes]] = []  # (when, subject, body): run events and acks

    async def record(msg: Msg) -> None:
        seen.append((time.monotonic(), msg.subject, msg.data))

    nc = await nats.connect(fresh_nats.url)
    js = nc.jetstream()
    owner = start(tmp_path / "owner", fresh_nats.url, "owner", env)
    other = None
    try:
        for subject in ("mesh.run.>", "$JS.ACK.TD.>", "mesh.dead.>"):
            await nc.subscribe(subject, cb=record)
        await nc.flush()
        await _consumer(js, "TD", "s.flow")  # made by the owner's trigger
        ack = await js.publish("td.in", b"{}")
        assert ack.seq == 1
        await wait_for_line(log, ["start", "b"], timeout=30)
        other = start(tmp_path / "other", fresh_nats.url, "other", env)
        info = await js.consumer_info("TD", "mesh-trigger-s_flow")
        assert info.ack_floor.stream_seq == 0  # mid-run: not acked yet
        owner.crash()  # kill -9 of `up` and its workers, mid-step b
        other.wait_for("resuming durable run " + RUN, timeout=60)
        await _until(lambda: sum(line[:2] == ["start", "b"] for line in lines(log)) == 2,
                     timeout=60)  # resumed, held at b again
        # The message comes back (ack_wait) to the other `up` while the resumed run still
        # runs: that delivery joins the run and is kept alive (in progress, once a third of
        # ack_wait) past ack_wait, rather than delivered a third time.
        await _until(lambda: len([b for _, s, b in seen if s.startswith("$JS.ACK.TD.")
                                  and s.split(".")[4] == "2" and b == b"+WPI"]) >= 4,
                     timeout=60)
        info = await js.consumer_info("TD", "mesh-trigger-s_flow")
        assert info.ack_floor.stream_seq == 0 and info.num_ack_pending == 1
        assert not [s for _, s, _ in seen if s.endswith(".run_finished")]
        gate.touch()
        # The run parks (sleep) past the trigger's wait (the pipeline's timeout): the pipeline
        # answers that it still runs, and the trigger asks again within the same delivery.
        other.wait_for(f"its run {RUN} is still running; acked once it ends", timeout=60)
        info = await js.consumer_info("TD", "mesh-trigger-s_flow")
        assert info.ack_floor.stream_seq == 0 and info.num_ack_pending == 1
        deadline = time.monotonic() + 60
        while True:  # the message settled: acked, nothing pending or waiting
            info = await js.consumer_info("TD", "mesh-trigger-s_flow")
            if info.ack_floor.stream_seq >= 1 and info.num_ack_pending == 0:
                break
            assert time.monotonic() < deadline, f"message never acked: {info}"
            await asyncio.sleep(0.1)
        assert info.num_pending == 0 and info.num_redelivered <= 1
    finally:
        owner.stop()
        if other is not None:
            other.stop()
    await nc.close()

    # Waiting for the run is no failure of the trigger's: only the pipeline's own server logs
    # the `timeout` it answered (once an ask, at most), the trigger an info line.
    assert other.log.count(" failed: ") <= other.log.count("acked once it ends"), other.log
    runs = {subject.split(".")[2] for _, subject, _ in seen if subject.startswith("mesh.run.")}
    assert runs == {RUN}, f"one run for the message, not {runs}"
    ended = [t for t, subject, _ in seen if subject.startswith("mesh.run.")
             and subject.rsplit(".", 1)[-1] in ("run_finished", "run_failed", "run_cancelled")]
    assert [s for _, s, _ in seen if s.startswith(f"mesh.run.{RUN}.run_finished")], seen
    assert len(ended) == 1, ended
    acks = [(t, subject, body) for t, subject, body in seen if subject.startswith("$JS.ACK.")]
    final = [(t, subject) for t, subject, body in acks if body in (b"", b"+ACK")]
    assert len(final) == 1 and final[0][0] >= ended[0], f"acked once, after the end: {acks}"
    assert final[0][1].split(".")[4] == "2"  # on its second delivery: never a third
    assert not [b for _, _, b in acks if b.startswith((b"-NAK", b"+TERM"))], acks
    assert not [s for _, s, _ in seen if s.startswith("mesh.dead.")], "dead-lettered"
    done = [(line[1], line[2]) for line in lines(log) if line[0] == "done"]
    started = [(line[1], line[2]) for line in lines(log) if line[0] == "start"]
    for step in "abc":
        key = f"{RUN}/{step}"
        assert [k for s, k in done if s == step] == [key], done
    assert [k for s, k in started if s == "a"] == [f"{RUN}/a"]  # finished before: never again
    assert [k for s, k in started if s == "b"] == [f"{RUN}/b"] * 2  # in flight: twice, one key

"""`up --workers N`: worker processes that share every agent, replaced when they die,
stopped in order by a signal. Real `up` processes, real signals, no sleeps."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from runtime.nats.caller import call_agent
from runtime.nats.client import open_client
from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, cli, free_port, running, write_mesh

HANDLERS = """
    import asyncio
    import os

    def pid(payload):
        return {"pid": os.getpid()}

    async def slow(payload):
        await asyncio.sleep(payload["seconds"])
        return {"done": True, "pid": os.getpid()}
"""

MESH = """
    version: 1
    agents:
      {p}.pid:
        handler: {mod}:pid
      {p}.slow:
        handler: {mod}:slow
"""


def serve(folder: Path, url: str | None, prefix: str, *extra: str, **options: object) -> UpProcess:
    path, _ = write_mesh(folder, MESH.replace("{p}", prefix), HANDLERS)
    return UpProcess(path, url, *extra, **options)  # type: ignore[arg-type]


async def pids(url: str, name: str, calls: int) -> set[int]:
    nc = await open_client(url)
    try:
        replies = await asyncio.gather(*(call_agent(nc, name, {}, 5) for _ in range(calls)))
    finally:
        await nc.close()
    return {reply["pid"] for reply in replies}


def alive(pid: int) -> bool:
    return running(pid)  # an orphan's zombie (pytest is a subreaper) has ended


def wait_gone(pids: set[int], timeout: float = 20) -> set[int]:
    """The processes among `pids` still running after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (left := {p for p in pids if alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


async def test_four_workers_share_every_agent(tmp_path: Path, nats_url: str, unique: str) -> None:
    with serve(tmp_path, nats_url, f"w{unique}", "--workers", "4") as up:
        seen = await pids(nats_url, f"w{unique}.pid", 200)
        ready = up.wait_for("ready:")
        shown = cli("status", f"w{unique}.pid", "--nats", nats_url, "--json")
        assert up.stop() == 0
    assert ready == f"ready: 2 agents, 0 pipelines on {nats_url} (4 workers)"
    assert len(seen) == 4
    row = json.loads(shown.stdout)[0]
    assert (row["instances"], row["requests"]) == (4, 200)  # one instance per worker
    assert up.process.pid not in seen  # the supervisor serves nothing itself
    assert wait_gone(seen) == set()


async def test_a_killed_worker_is_replaced_and_one_that_keeps_dying_is_backed_off(
        tmp_path: Path, nats_url: str, unique: str) -> None:
    name = f"w{unique}.pid"
    with serve(tmp_path, nats_url, f"w{unique}", "--workers", "2", "--no-reload") as up:
        first = await pids(nats_url, name, 60)
        victim = min(first)
        start = len(up.lines)
        os.kill(victim, signal.SIGKILL)
        died = up.wait_for("stopped unexpectedly", 20, start)
        back = up.wait_for("serves in place of", 20, start)
        second = await pids(nats_url, name, 60)
        newcomer = (second - first).pop()
        start = len(up.lines)
        os.kill(newcomer, signal.SIGKILL)  # it dies within seconds of starting: back off
        backoff = up.wait_for("keeps stopping", 20, start)
        up.wait_for("serves in place of", 20, start)
        third = await pids(nats_url, name, 60)
    slot = died.split()[2]
    assert died == (f"warning: worker {slot} (pid {victim}) stopped unexpectedly (killed by "
                    "SIGKILL); starting a new one")
    assert back.startswith(f"worker {slot} (pid ") and back.endswith(f"serves in place of "
                                                                      f"pid {victim}")
    assert len(second) == 2 and victim not in second
    assert backoff == f"warning: worker {slot} keeps stopping; next try in 0.5 s"
    assert len(third) == 2 and newcomer not in third


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_to_the_process_group_answers_requests_in_flight_and_exits_0(
        tmp_path: Path, fresh_nats: NatsServer, unique: str, sig: int) -> None:
    """As a terminal's Ctrl-C does: the signal reaches `up` and everything in its group."""
    up = serve(tmp_path, fresh_nats.url, f"w{unique}", "--workers", "2", new_session=True)
    try:
        up.wait_for("ready:")
        workers = await pids(fresh_nats.url, f"w{unique}.pid", 60)
        nc = await open_client(fresh_nats.url)
        try:
            slow = [asyncio.ensure_future(call_agent(nc, f"w{unique}.slow", {"seconds": 0.8}, 10))
                    for _ in range(4)]
            await pids(fresh_nats.url, f"w{unique}.pid", 4)  # the slow ones have arrived
            os.killpg(up.process.pid, sig)
            replies = await asyncio.gather(*slow)
        finally:
            await nc.close()
        code = await asyncio.to_thread(up.process.wait, 30)
    finally:
        up.stop()
    assert [r["done"] for r in replies] == [True] * 4
    assert code == 0
    assert up.lines[-2:] == ["stopping: finishing 4 requests in flight (at most 30s; Ctrl-C "
                             "again to stop at once)", "stopped"]
    assert wait_gone(workers) == set()


def test_workers_leave_when_the_supervisor_is_killed(tmp_path: Path, nats_url: str,
                                                     unique: str) -> None:
    up = serve(tmp_path, nats_url, f"w{unique}")
    try:
        up.wait_for("ready:")
        workers = asyncio.run(pids(nats_url, f"w{unique}.pid", 20))
        up.process.kill()  # no chance to stop them: they see their line to it close
        up.process.wait()
        assert wait_gone(workers) == set()
    finally:
        up.stop()


def test_workers_must_be_a_positive_number(tmp_path: Path) -> None:
    result = cli("up", "-f", str(tmp_path / "mesh.yaml"), "--workers", "0")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "mesh-runtime up: error: argument --workers: expected a whole number of at least 1, "
        "got '0'")


async def test_metrics_add_up_every_worker(tmp_path: Path, nats_url: str, unique: str) -> None:
    port = free_port()
    with serve(tmp_path, nats_url, f"w{unique}", "--workers", "2", "--metrics-port", str(port)):
        seen = await pids(nats_url, f"w{unique}.pid", 40)
        url = f"http://127.0.0.1:{port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    lines = text.decode().splitlines()
    assert len(seen) == 2  # both workers answered some of the 40
    assert f'mesh_requests_total{{code="ok",name="w{unique}.pid"}} 40.0' in lines
    assert "mesh_generation 1.0" in lines


@pytest.mark.parametrize(("text", "flag", "expected"), [
    ("version: 1\n", None, (4222, None)),
    ("version: 1\nnats: {embedded: {port: 0, store_dir: s}}\n", None, (0, "s")),
    ("version: 1\nnats: {url: 'nats://h:1'}\n", None, None),
    ("version: 1\nnats: {url: 'nats://h:1'}\n", "embedded", (4222, None)),
    ("version: 1\nnats: {embedded: {port: '${P}'}}\n", None, None),
    ("version: 1\n", "nats://h:1", None),
    ("[not, closed", None, None),
])
def test_the_embedded_server_is_started_ahead_only_when_the_file_will_want_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, flag: str | None,
        expected: tuple[int, str | None] | None) -> None:
    from runtime.supervise.embedded_ahead import _wanted

    monkeypatch.delenv("NATS_URL", raising=False)
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    wanted = _wanted(path, flag)
    assert wanted == (None if expected is None else (*expected, tmp_path.resolve()))


def _total(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    prefix = f'mesh_requests_total{{code="ok",name="{name}"}} '
    return sum(float(line[len(prefix):]) for line in text.decode().splitlines()
               if line.startswith(prefix))


async def test_summed_counters_never_go_down_when_a_worker_is_killed(
        tmp_path: Path, nats_url: str, unique: str) -> None:
    port, name = free_port(), f"w{unique}.pid"
    with serve(tmp_path, nats_url, f"w{unique}", "--workers", "2", "--no-reload",
               "--metrics-port", str(port)) as up:
        assert len(await pids(nats_url, name, 60)) == 2
        totals = [await asyncio.to_thread(_total, port, name)]
        victim = up.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        assert wait_gone({victim}) == set()
        totals.append(await asyncio.to_thread(_total, port, name))  # dead, not replaced yet
        up.wait_for(f"serves in place of pid {victim}")
        totals.append(await asyncio.to_thread(_total, port, name))
        await pids(nats_url, name, 10)
        totals.append(await asyncio.to_thread(_total, port, name))
    assert totals == [60.0, 60.0, 60.0, 70.0]

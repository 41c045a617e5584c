"""Log lines: UTC timestamp, level, agent; JSON on request; failed requests rate-limited."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path

import nats

from runtime.core.protocol import MeshError
from runtime.nats.caller import call_agent
from tests.helpers import UpProcess, write_mesh

HANDLERS = """
    def boom(payload):
        raise ValueError("no luck")
"""

MESH = """
    version: 1
    name: logs-test
    agents:
      lg{u}.boom: {handler: "{mod}:boom"}
"""

TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


async def fail(url: str, name: str, times: int) -> list[str]:
    nc = await nats.connect(url)
    ids = []
    try:
        for n in range(times):
            ids.append(f"req-{n}")
            with contextlib.suppress(MeshError):
                await call_agent(nc, name, {}, 5, request_id=f"req-{n}")
    finally:
        await nc.close()
    return ids


def test_text_lines_start_with_utc_time_and_level_and_name_the_agent(
        nats_url: str, tmp_path: Path, unique: str) -> None:
    path, _ = write_mesh(tmp_path, MESH.replace("{u}", unique), HANDLERS)
    with UpProcess(path, nats_url, "--no-reload") as up:
        asyncio.run(fail(nats_url, f"lg{unique}.boom", 5))
        up.wait_for("4 more requests failed with handler_error in the last second")
    ready = next(line for line in up.raw_lines if "ready:" in line)
    assert re.fullmatch(TIMESTAMP + r" info: ready: 1 agents, 0 pipelines on .*", ready)
    failed = [line for line in up.raw_lines if "failed" in line]
    assert len(failed) == 2  # one line, then the count of the rest
    assert re.fullmatch(TIMESTAMP + rf" warning: \[lg{unique}\.boom\] request req-0 failed: "
                        r"handler_error: ValueError: no luck \(trace [0-9a-f]{32}\)", failed[0])
    assert re.fullmatch(TIMESTAMP + rf" warning: \[lg{unique}\.boom\] 4 more requests failed "
                        r"with handler_error in the last second", failed[1])
    assert not [line for line in up.raw_lines if "Traceback" in line]  # that is for debug


def test_json_lines_and_tracebacks_at_debug_level(nats_url: str, tmp_path: Path,
                                                  unique: str) -> None:
    path, _ = write_mesh(tmp_path, MESH.replace("{u}", unique), HANDLERS)
    with UpProcess(path, nats_url, "--no-reload", "--log-format", "json",
                   "--log-level", "debug") as up:
        asyncio.run(fail(nats_url, f"lg{unique}.boom", 1))
        up.wait_for("traceback of request req-0")
    lines = [json.loads(line) for line in up.raw_lines]
    assert all(re.fullmatch(TIMESTAMP, line["time"]) for line in lines)
    failed = next(line for line in lines if "failed" in line["message"])
    trace_id = failed["trace_id"]  # the way to the request's trace
    assert re.fullmatch("[0-9a-f]{32}", trace_id)
    assert {k: v for k, v in failed.items() if k != "time"} == {
        "level": "warning", "agent": f"lg{unique}.boom", "trace_id": trace_id,
        "message": f"request req-0 failed: handler_error: ValueError: no luck (trace {trace_id})"}
    traceback = next(line for line in lines if "traceback of" in line["message"])
    assert traceback["level"] == "debug"
    assert traceback["traceback"].endswith('raise ValueError("no luck")\nValueError: no luck')


def test_control_characters_in_a_request_id_never_forge_a_log_line(
        nats_url: str, tmp_path: Path, unique: str) -> None:
    path, _ = write_mesh(tmp_path, MESH.replace("{u}", unique), HANDLERS)

    async def hostile() -> None:
        nc = await nats.connect(nats_url)
        try:
            await nc.request(f"mesh.agent.lg{unique}.boom", b"{}", timeout=5,
                             headers={"X-Mesh-Request-Id": "x\x1b[2Jinfo: ready"})
        finally:
            await nc.close()

    with UpProcess(path, nats_url, "--no-reload") as up:
        asyncio.run(hostile())
        # Such an id is refused (invalid_input, answered under an id of ours), never logged.
        line = up.wait_for("failed: invalid_input")
    assert "\x1b" not in line and "info: ready" not in line

"""Every call the runtime makes carries X-Mesh-Timeout, the caller's remaining budget, so a
deadline holds across hops: the CLI, pipeline steps and ctx.call each send what is left."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.nats.caller import call_agent
from tests.helpers import UpProcess, cli, write_mesh

P = f"d{uuid.uuid4().hex[:6]}"

HANDLERS = '''
    import asyncio

    RUNS = {"slow": 0}
    RELEASE = asyncio.Event()

    async def relay(payload, ctx):
        return await ctx.call("{p}.probe", {})

    async def remaining(payload, ctx):
        return {"remaining": ctx.remaining()}

    async def slow(payload):
        RUNS["slow"] += 1
        if payload.get("hold"):  # holds the agent's only slot until released
            RELEASE.clear()
            await asyncio.wait_for(RELEASE.wait(), 8)
        return {"runs": RUNS["slow"]}

    async def release(payload):
        RELEASE.set()
        return {}
'''

MESH = f'''
    version: 1
    name: deadlines
    agents:
      {P}.relay: {{handler: "{{mod}}:relay", timeout: 2s}}
      {P}.remaining: {{handler: "{{mod}}:remaining", timeout: 10s}}
      {P}.slow: {{handler: "{{mod}}:slow", timeout: 10s, concurrency: 1}}
      {P}.release: {{handler: "{{mod}}:release"}}
    external:
      {P}.probe: {{}}
    pipelines:
      {P}.budget:
        timeout: 1s
        steps:
          - id: whole
            call: {P}.probe
          - id: short
            call: {P}.probe
            timeout: 300ms
      {P}.hop:
        timeout: 2s
        steps:
          - id: seen
            call: {P}.remaining
      {P}.open-hop:
        steps:
          - id: seen
            call: {P}.remaining
'''


@pytest.fixture(scope="module")
def up(nats_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    path, _ = write_mesh(tmp_path_factory.mktemp("deadlines"), MESH, HANDLERS.replace("{p}", P))
    with UpProcess(path, nats_server.url, "--no-reload") as process:
        yield process



@pytest.fixture
async def probe(nc: Client) -> AsyncIterator[list[float]]:
    """A raw agent that notes the X-Mesh-Timeout of every request it gets."""
    budgets: list[float] = []

    async def answer(msg: Any) -> None:
        budgets.append(float(msg.headers[p.HDR_TIMEOUT]))
        await nc.publish(msg.reply, b"{}", headers={p.HDR_STATUS: "ok"})

    sub = await nc.subscribe(p.agent_subject(f"{P}.probe"), cb=answer)
    await nc.flush()
    yield budgets
    await sub.unsubscribe()


async def test_cli_sends_its_timeout(probe: list[float], nats_url: str) -> None:
    done = await asyncio.to_thread(cli, "call", f"{P}.probe", "{}", "--timeout", "2s",
                                   "--nats", nats_url)
    assert done.returncode == 0, done.stderr
    assert probe == [2.0]


async def test_pipeline_steps_send_what_is_left(probe: list[float], nc: Client) -> None:
    await call_agent(nc, f"{P}.budget", {}, 5)
    whole, short = probe
    assert 0.8 < whole <= 1.0  # the pipeline's 1s, less what has passed
    assert 0.2 < short <= 0.3  # the step's own timeout is smaller


async def test_ctx_call_sends_the_handlers_remaining_time(probe: list[float], nc: Client) -> None:
    await call_agent(nc, f"{P}.relay", {}, 5)
    assert 1.5 < probe[0] <= 2.0


async def test_a_steps_agent_sees_the_pipelines_budget(nc: Client) -> None:
    reply = await call_agent(nc, f"{P}.hop", {}, 5)
    assert 1.5 < reply["remaining"] <= 2.0  # the pipeline's 2s, not the agent's own 10s


async def test_a_pipeline_passes_its_callers_budget_to_each_step(nc: Client) -> None:
    reply = await call_agent(nc, f"{P}.open-hop", {}, 2)  # sends X-Mesh-Timeout: 2.000
    assert 1.5 < reply["remaining"] <= 2.0  # not the pipeline's default 30s


async def test_cli_timeout_on_a_full_queue_is_expired_and_the_handler_never_runs(
        nc: Client, nats_url: str) -> None:
    busy = asyncio.create_task(call_agent(nc, f"{P}.slow", {"hold": True}, 10))
    await asyncio.sleep(0)  # the task publishes its request ...
    await nc.flush()  # ... and the server has it before the CLI's
    try:
        done = await asyncio.to_thread(cli, "call", f"{P}.slow", "{}", "--timeout", "500ms",
                                       "--nats", nats_url)
    finally:
        await call_agent(nc, f"{P}.release", {}, 10)
    assert (await busy) == {"runs": 1}
    assert done.returncode == 1
    assert '"code": "expired"' in done.stderr
    after = await call_agent(nc, f"{P}.slow", {}, 10)
    assert after == {"runs": 2}  # the expired request never ran



async def test_a_pipeline_passes_on_what_its_caller_has_left() -> None:
    from runtime.pipeline.engine import compile_pipeline
    from runtime.pipeline.spec import PipelineSpec

    budgets: list[float] = []

    async def call(name: str, payload: Any, timeout: float, request_id: str) -> Any:
        budgets.append(timeout)
        return {}

    spec = PipelineSpec.model_validate({"steps": [{"id": "a", "call": "x"},
                                                  {"id": "b", "call": "x", "timeout": "200ms"}]})
    compiled, problems = compile_pipeline("p", spec, {"x"})
    assert compiled is not None, problems
    await compiled.run({}, call=call, request_id="r", mesh_name="m", default_timeout=30,
                       caller_left=2)
    first, second = budgets
    assert 1.8 < first <= 2.0  # the caller's 2s, not the step's default 30s
    assert second == 0.2

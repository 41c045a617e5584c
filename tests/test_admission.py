"""Admission through a real `up`: the waiting line and its limit, and deadlines on arrival
(`X-Mesh-Timeout`): `expired` versus `timeout` versus `overloaded`, exactly."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from nats.aio.client import Client

from runtime.core.protocol import HDR_STATUS, HDR_TIMEOUT
from tests.helpers import UpProcess, cli, write_mesh

HANDLERS = '''
    import asyncio
    import time

    STATE = {"started": 0, "running": 0}

    async def hold(payload, ctx):
        started = time.monotonic()
        STATE["started"] += 1
        STATE["running"] += 1
        try:
            await asyncio.sleep(payload.get("seconds", 0))
        finally:
            STATE["running"] -= 1
        return {"n": payload.get("n"), "remaining": ctx.remaining(), "started": started,
                "deadline": ctx.deadline}

    async def stats(payload):
        return dict(STATE)
'''

MESH = """
    version: 1
    name: admission-test
    defaults: {timeout: 5s, queue: 3}
    agents:
      {prefix}.one:
        handler: {mod}:hold
        concurrency: 1
        queue: 2
      {prefix}.none:
        handler: {mod}:hold
        concurrency: 1
        queue: 0
      {prefix}.default:
        handler: {mod}:hold
        concurrency: 1
      {prefix}.free:
        handler: {mod}:hold
      {prefix}.stats:
        handler: {mod}:stats
    pipelines:
      {prefix}.via:
        steps:
          - id: one
            call: {prefix}.free
"""

PREFIX = f"a{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def up(nats_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    folder = tmp_path_factory.mktemp("admission")
    path, _ = write_mesh(folder, MESH.replace("{prefix}", PREFIX), HANDLERS)
    with UpProcess(path, nats_server.url, "--no-reload") as process:
        yield process



async def request(nc: Client, short: str, payload: Any = None, budget: str | None = None,
                  timeout: float = 8) -> tuple[str, Any]:
    """(X-Mesh-Status, decoded body) of one request, with `budget` as X-Mesh-Timeout."""
    headers = {HDR_TIMEOUT: budget} if budget is not None else None
    msg = await nc.request(f"mesh.agent.{PREFIX}.{short}", orjson.dumps(payload or {}),
                           timeout=timeout, headers=headers)
    assert msg.headers is not None
    return msg.headers[HDR_STATUS], orjson.loads(msg.data)


async def started(nc: Client) -> int:
    return int((await request(nc, "stats"))[1]["started"])


async def until_running(nc: Client, count: int) -> None:
    for _ in range(200):  # bounded: until `count` handlers run
        if (await request(nc, "stats"))[1]["running"] >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never {count} running")


async def test_past_the_queue_the_answer_is_overloaded_at_once(nc: Client) -> None:
    holder = asyncio.ensure_future(request(nc, "one", {"seconds": 2.0, "n": 0}))
    await until_running(nc, 1)
    waiting = [asyncio.ensure_future(request(nc, "one", {"n": n})) for n in (1, 2)]
    await asyncio.sleep(0)  # both sent before the one that finds the line full
    status, body = await request(nc, "one", {"n": 3})
    assert not holder.done()  # at once, not when a slot frees
    assert (status, body["code"]) == ("error", "overloaded")
    assert body["message"] == (f"'{PREFIX}.one' is at its concurrency limit (1) with 2 "
                               "requests waiting; try again later")
    assert body["details"] == {"concurrency": 1, "queue": 2}
    answers = await asyncio.gather(holder, *waiting)
    assert [(s, b["n"]) for s, b in answers] == [("ok", 0), ("ok", 1), ("ok", 2)]


async def test_queue_zero_refuses_whenever_every_slot_is_busy(nc: Client) -> None:
    holder = asyncio.ensure_future(request(nc, "none", {"seconds": 0.5, "n": 0}))
    await until_running(nc, 1)
    status, body = await request(nc, "none", {"n": 1})
    assert not holder.done()
    assert (status, body["code"], body["details"]) == (
        "error", "overloaded", {"concurrency": 1, "queue": 0})
    assert (await holder)[0] == "ok"


async def test_the_default_queue_comes_from_defaults(nc: Client) -> None:
    holder = asyncio.ensure_future(request(nc, "default", {"seconds": 0.8}))
    await until_running(nc, 1)
    waiting = [asyncio.ensure_future(request(nc, "default")) for _ in range(3)]
    await asyncio.sleep(0)
    status, body = await request(nc, "default")
    assert (status, body["details"]) == ("error", {"concurrency": 1, "queue": 3})
    assert [s for s, _ in await asyncio.gather(holder, *waiting)] == ["ok"] * 4


async def test_a_budget_of_zero_is_expired_and_never_runs(nc: Client) -> None:
    before = await started(nc)
    for budget in ("0", "-1.5"):
        status, body = await request(nc, "one", budget=budget)
        assert (status, body["code"]) == ("error", "expired")
        assert body["message"] == (f"'{PREFIX}.one' received the request after its caller's "
                                   f"deadline (X-Mesh-Timeout: {budget})")
    assert await started(nc) == before


async def test_a_malformed_budget_is_invalid_input(nc: Client) -> None:
    before = await started(nc)
    for budget in ("soon", "nan", "1e3", "5s", "9" * 50):
        status, body = await request(nc, "one", budget=budget)
        assert (status, body["code"]) == ("error", "invalid_input"), budget
        shown = budget if len(budget) <= 40 else "9" * 40 + "..."
        assert body["message"] == (f"X-Mesh-Timeout must be a number of seconds, like 2.5 "
                                   f"(got {shown!r})")
    assert await started(nc) == before


async def test_waiting_past_the_callers_deadline_is_expired(nc: Client) -> None:
    holder = asyncio.ensure_future(request(nc, "one", {"seconds": 1.5}))
    await until_running(nc, 1)
    before = await started(nc)
    sent = time.monotonic()
    status, body = await request(nc, "one", budget="0.3")
    waited = time.monotonic() - sent
    assert (status, body["code"]) == ("error", "expired")
    assert body["message"] == (f"'{PREFIX}.one' could not start before its caller's deadline "
                               "(0.3s): every slot (1) stayed busy")
    assert waited >= 0.3
    assert not holder.done()  # at its deadline, not when the slot frees
    await holder
    assert await started(nc) == before  # its handler never ran


async def test_running_past_the_callers_deadline_is_timeout(nc: Client) -> None:
    status, body = await request(nc, "one", {"seconds": 2}, budget="0.3")
    assert (status, body["code"]) == ("error", "timeout")
    assert body["message"] == (f"'{PREFIX}.one' did not finish before its caller's deadline "
                               "(0.3s)")


async def test_a_budget_above_the_agents_timeout_changes_nothing(nc: Client) -> None:
    status, body = await request(nc, "one", budget="600")
    assert status == "ok"
    assert 4 < body["remaining"] <= 5  # the agent's own 5 s


async def test_ctx_deadline_counts_the_wait_for_a_slot(nc: Client) -> None:
    holder = asyncio.ensure_future(request(nc, "one", {"seconds": 1.0}))
    await until_running(nc, 1)
    sent = time.monotonic()  # CLOCK_MONOTONIC: the same clock as `up`'s on this machine
    status, body = await request(nc, "one", budget="3")
    assert status == "ok"
    arrival = body["deadline"] - 3  # the deadline counts from arrival...
    assert sent <= arrival < body["started"] - 0.1  # ...not from the start, after the wait
    assert body["remaining"] <= body["deadline"] - body["started"]
    await holder


def test_queue_is_checked_at_load(tmp_path: Any) -> None:
    path, _ = write_mesh(tmp_path, """
        version: 1
        defaults: {queue: -1}
        agents:
          a: {handler: "{mod}:f", queue: many}
    """, "def f(payload):\n    return payload\n")
    result = cli("validate", "-f", str(path))
    assert result.returncode == 1
    assert "mesh.yaml:2:19: defaults.queue: Input should be greater than or equal to 0" \
        in result.stderr
    assert "agents.a.queue: Input should be a valid integer" in result.stderr


async def test_a_pipeline_passes_the_callers_deadline_to_its_steps(nc: Client) -> None:
    status, body = await request(nc, "via", budget="1.5")
    assert status == "ok"
    assert 0.5 < body["remaining"] <= 1.5  # the caller's 1.5 s, not the agent's own 5 s

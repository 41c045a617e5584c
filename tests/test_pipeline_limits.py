"""A pipeline request cannot fan out without bound: for_each's max_items and the whole-run
timeout, over a real `up` process and a real nats-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.core import protocol as p
from runtime.core.protocol import MeshError
from runtime.nats.caller import call_agent
from runtime.nats.client import open_client
from tests.helpers import UpProcess, write_mesh

HANDLERS = """
    import asyncio

    COUNTS = {}

    async def slow(payload):
        COUNTS[payload["token"]] = COUNTS.get(payload["token"], 0) + 1
        await asyncio.sleep(payload.get("sleep", 0))
        return {"item": payload.get("item")}

    def report(payload):
        return {"count": COUNTS.get(payload["token"], 0)}
"""

MESH = """
    version: 1
    name: limits-{unique}
    defaults: {timeout: 2s}
    agents:
      lim{unique}.slow: {handler: "{mod}:slow", concurrency: 8}
      lim{unique}.report: {handler: "{mod}:report"}
    pipelines:
      lim{unique}.fan:
        steps:
          - id: each
            for_each: input.items
            call: lim{unique}.slow
            with: {token: "${{ input.token }}", item: "${{ item }}"}
      lim{unique}.few:
        steps:
          - id: each
            for_each: input.items
            max_items: 3
            on_error: {value: fell back}
            call: lim{unique}.slow
            with: {token: "${{ input.token }}", item: "${{ item }}"}
      lim{unique}.slowfan:
        timeout: 1s
        steps:
          - id: each
            for_each: input.items
            max_concurrency: 2
            timeout: 10s
            call: lim{unique}.slow
            with: {token: "${{ input.token }}", sleep: 0.2}
      lim{unique}.unbounded:
        steps:
          - id: wait
            timeout: 10s
            call: lim{unique}.slow
            with: {token: "${{ input.token }}", sleep: 5}
"""


@pytest.fixture
def served(tmp_path: Path, nats_url: str, unique: str) -> Iterator[str]:
    path, _ = write_mesh(tmp_path, MESH.replace("{unique}", unique), HANDLERS)
    with UpProcess(path, nats_url):
        yield f"lim{unique}"


async def call(url: str, name: str, payload: Any, timeout: float = 10) -> Any:
    nc = await open_client(url)
    try:
        return await call_agent(nc, name, payload, timeout)
    finally:
        await nc.close()


async def calls_made(url: str, prefix: str, token: str) -> int:
    return int((await call(url, f"{prefix}.report", {"token": token}))["count"])


async def test_for_each_past_max_items_is_invalid_input_before_any_call(
        nats_url: str, served: str) -> None:
    with pytest.raises(MeshError) as caught:
        await call(nats_url, f"{served}.fan", {"token": "t1", "items": list(range(1001))})
    assert (caught.value.code, caught.value.message) == (
        p.INVALID_INPUT, "step 'each': for_each input.items gave 1,001 items; it takes at most "
                         "1,000 (its max_items)")
    assert caught.value.details == {"step": "each", "items": 1001, "max_items": 1000}
    assert await calls_made(nats_url, served, "t1") == 0


async def test_max_items_is_per_step_and_on_error_does_not_hide_it(
        nats_url: str, served: str) -> None:
    assert await call(nats_url, f"{served}.few", {"token": "t2", "items": [1, 2, 3]}) == [
        {"item": 1}, {"item": 2}, {"item": 3}]
    with pytest.raises(MeshError) as caught:
        await call(nats_url, f"{served}.few", {"token": "t2", "items": [1, 2, 3, 4]})
    assert caught.value.code == p.INVALID_INPUT
    assert await calls_made(nats_url, served, "t2") == 3


async def test_a_huge_fan_out_is_refused_within_the_timeout(nats_url: str, served: str) -> None:
    # The reported case: a 600 KB request whose for_each read a 100,000-item list ran a
    # minute past the pipeline's timeout, and `up` was dropped by NATS as a slow consumer.
    items = ["x" * 4] * 100_000
    started = time.monotonic()
    with pytest.raises(MeshError) as caught:
        await call(nats_url, f"{served}.fan", {"token": "t3", "items": items}, timeout=30)
    elapsed = time.monotonic() - started
    assert caught.value.code == p.INVALID_INPUT
    assert elapsed < 2  # the pipeline's timeout: never more
    assert await calls_made(nats_url, served, "t3") == 0


async def test_the_pipeline_timeout_bounds_every_step(nats_url: str, served: str) -> None:
    # 10 items, two at a time, 0.2 s each: 1 s of work would need 1 s more than it has.
    started = time.monotonic()
    with pytest.raises(MeshError) as caught:
        await call(nats_url, f"{served}.slowfan", {"token": "t4", "items": list(range(10))})
    assert caught.value.code == p.TIMEOUT
    assert time.monotonic() - started < 1.9


async def test_a_pipeline_without_a_timeout_has_the_default_one(
        nats_url: str, served: str) -> None:
    started = time.monotonic()
    with pytest.raises(MeshError) as caught:
        await call(nats_url, f"{served}.unbounded", {"token": "t5"})
    assert caught.value.code == p.TIMEOUT
    assert time.monotonic() - started < 3.5  # defaults.timeout is 2s; the step's 10s is cut
    await asyncio.wait_for(call(nats_url, f"{served}.report", {"token": "t5"}), 5)

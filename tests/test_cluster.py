"""Many `up` processes on a NATS cluster: NATS routes and balances, mesh-runtime just joins."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import nats
import pytest

from runtime.core.protocol import MeshError
from runtime.nats.caller import call_agent
from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, free_port, write_mesh

HANDLERS = """
    import os

    async def where(payload):
        return {"pid": os.getpid(), "text": payload.get("text", "")}
"""

SHARED = """
    version: 1
    nats:
      servers: [{urls}]
    agents:
      cl.where:
        handler: {mod}:where
"""

LEFT_ONLY = """
      cl.left:
        handler: {mod}:where
    pipelines:
      cl.both:
        steps:
          - id: here
            call: cl.left
            with: {text: "${{ input.text }}"}
          - id: there
            call: cl.right
            with: {text: "${{ steps.here.text }}"}
        returns: {left: "${{ steps.here.pid }}", right: "${{ steps.there.pid }}"}
    external:
      cl.right: {description: served by the other process}
"""

RIGHT_ONLY = """
      cl.right:
        handler: {mod}:where
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[NatsServer, NatsServer]]:
    """Two routed servers (no JetStream: discovery is beside the point here)."""
    route_a, route_b = free_port(), free_port()
    a = NatsServer(jetstream=False, extra_args=[
        "--cluster_name", "mesh", "--cluster", f"nats://127.0.0.1:{route_a}",
        "--routes", f"nats://127.0.0.1:{route_b}"]).start()
    b = NatsServer(jetstream=False, extra_args=[
        "--cluster_name", "mesh", "--cluster", f"nats://127.0.0.1:{route_b}",
        "--routes", f"nats://127.0.0.1:{route_a}"]).start()
    try:
        yield a, b
    finally:
        b.stop()
        a.stop()


@pytest.fixture(scope="module")
def ups(cluster: tuple[NatsServer, NatsServer],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UpProcess, UpProcess]]:
    a, b = cluster
    left, right = tmp_path_factory.mktemp("left"), tmp_path_factory.mktemp("right")
    # Each process lists both servers, in a different order, as a cluster's clients would.
    left_mesh = (SHARED + LEFT_ONLY).replace("{urls}", f"{a.url}, {b.url}")
    right_mesh = (SHARED + RIGHT_ONLY).replace("{urls}", f"{b.url}, {a.url}")
    one = UpProcess(write_mesh(left, left_mesh, HANDLERS)[0], None, "--no-reload",
                    env={"NATS_URL": ""})
    two = UpProcess(write_mesh(right, right_mesh, HANDLERS)[0], None, "--no-reload",
                    env={"NATS_URL": ""})
    try:
        one.wait_for("ready:")
        two.wait_for("ready:")
        yield one, two
    finally:
        one.stop()
        two.stop()


async def _until_routed(nc: nats.NATS, name: str) -> None:
    """Routes gossip subscriptions in a moment: retry a bounded number of times."""
    for _ in range(100):
        try:
            await call_agent(nc, name, {}, 1)
            return
        except MeshError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never became reachable across the cluster")


async def test_calls_cross_servers_and_pipelines_span_processes(
        cluster: tuple[NatsServer, NatsServer], ups: tuple[UpProcess, UpProcess]) -> None:
    nc = await nats.connect(cluster[0].url)  # a client of server A only
    try:
        await _until_routed(nc, "cl.right")
        right = await call_agent(nc, "cl.right", {"text": "hi"}, 5)
        both = await call_agent(nc, "cl.both", {"text": "hi"}, 5)
    finally:
        await nc.close()
    left_pid, right_pid = ups[0].worker_pid, ups[1].worker_pid  # the processes serving
    assert right == {"pid": right_pid, "text": "hi"}
    assert both == {"left": left_pid, "right": right_pid}


async def test_a_name_served_by_two_processes_is_balanced_between_them(
        cluster: tuple[NatsServer, NatsServer], ups: tuple[UpProcess, UpProcess]) -> None:
    nc = await nats.connect(cluster[1].url)
    try:
        await _until_routed(nc, "cl.where")
        pids = [(await call_agent(nc, "cl.where", {}, 5))["pid"] for _ in range(60)]
    finally:
        await nc.close()
    assert set(pids) == {ups[0].worker_pid, ups[1].worker_pid}


def test_each_process_joins_through_the_servers_its_file_lists(
        cluster: tuple[NatsServer, NatsServer], ups: tuple[UpProcess, UpProcess]) -> None:
    # nats-py shuffles the list (spreading a cluster's clients), so either server may be it.
    ready = [up.wait_for("ready:").rsplit(" on ", 1) for up in ups]
    assert {line[0] for line in ready} == {"ready: 2 agents, 1 pipelines",
                                          "ready: 2 agents, 0 pipelines"}
    assert {line[1] for line in ready} <= {s.url for s in cluster}

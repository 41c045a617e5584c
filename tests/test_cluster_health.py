"""On a 3-node JetStream cluster the buckets `up` creates have 3 replicas: killing the node
that leads the catalog keeps `ls` and OpenAgentMesh's `catalog()` working."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from openagentmesh import AgentMesh

from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess, cli, free_port, write_mesh

HANDLERS = """
    def echo(payload):
        return payload
"""

MESH = """
    version: 1
    name: cluster-health
    nats:
      servers: [{urls}]
    agents:
      ch.echo: {handler: "{mod}:echo"}
"""


@pytest.fixture
def cluster() -> Iterator[dict[str, NatsServer]]:
    routes = [free_port() for _ in range(3)]
    nodes: dict[str, NatsServer] = {}
    try:
        for i, route in enumerate(routes):
            others = ",".join(f"nats://127.0.0.1:{r}" for r in routes if r != route)
            nodes[f"n{i}"] = NatsServer(extra_args=[
                "--name", f"n{i}", "--cluster_name", "ch", "--cluster",
                f"nats://127.0.0.1:{route}", "--routes", others]).start()
        asyncio.run(_until_jetstream(nodes["n0"].url))
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()


async def _until_jetstream(url: str) -> None:
    """JetStream answers once the cluster has elected its meta leader (bounded: 30 s)."""
    nc = await nats.connect(url)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                await nc.jetstream(timeout=1).account_info()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise

    finally:
        await nc.close()


async def _catalog_stream(url: str) -> tuple[int, str]:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info("KV_mesh-catalog")
        assert info.cluster is not None and info.config.num_replicas is not None
        return info.config.num_replicas, str(info.cluster.leader)
    finally:
        await nc.close()


async def _oam_names(url: str) -> list[str]:
    async with AgentMesh(url) as mesh:
        return [e.name for e in await mesh.catalog()]


def test_losing_the_catalog_leader_keeps_the_catalog(cluster: dict[str, NatsServer],
                                                     tmp_path: Path) -> None:
    urls = ", ".join(node.url for node in cluster.values())
    path, _ = write_mesh(tmp_path, MESH.replace("{urls}", urls), HANDLERS)
    with UpProcess(path, None, "--no-reload"):
        replicas, leader = asyncio.run(_catalog_stream(cluster["n0"].url))
        assert replicas == 3
        cluster[leader].stop()
        survivor = next(node.url for name, node in cluster.items() if name != leader)
        deadline = time.monotonic() + 20
        while True:  # until the two left have elected a new leader for the stream
            listed = cli("ls", "--nats", survivor)
            if "ch.echo" in listed.stdout or time.monotonic() > deadline:
                break
        assert listed.stdout.splitlines()[1].split()[:2] == ["ch.echo", "call"]
        assert asyncio.run(_oam_names(survivor)) == ["ch.echo"]

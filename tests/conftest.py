"""Shared fixtures: real nats-server processes on free loopback ports, never mocks."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client

from runtime.nats.embedded import NatsServer
from tests.helpers import UpProcess

pytest_plugins = ["tests.leftovers"]  # the run fails if a process it started outlives it


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """One JetStream-enabled server for the session; tests keep apart by unique names."""
    with NatsServer() as server:
        yield server


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


@pytest.fixture
def fresh_nats() -> Iterator[NatsServer]:
    """A server of a test's own, for tests that look at shared state (the catalog)."""
    with NatsServer() as server:
        yield server


@pytest.fixture
def unique() -> str:
    """A short unique token, so agent names never collide on a shared server."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def nc(up: UpProcess, nats_url: str) -> AsyncIterator[Client]:
    """A client of the test server, once the module's own `up` fixture (its served mesh) is up."""
    client = await nats.connect(nats_url)
    yield client
    await client.close()

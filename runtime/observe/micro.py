"""NATS micro (ADR-32): every `up` answers $SRV.PING, $SRV.INFO and $SRV.STATS.

So `nats micro ls/info/stats` and any micro client see the agents: one service per
process (name = the mesh's name, id = the instance id), one endpoint per served name.
Request bodies are ignored; only the subject says what is asked. Bodies are built at most
once per freshness window and answers share a byte budget (micro_limits.py): a flood of
requests costs the flooder, not the agents.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from runtime.core import protocol as p
from runtime.observe.micro_limits import BodyCache, ByteBudget
from runtime.serve.stats import endpoint_data

if TYPE_CHECKING:
    from runtime.serve.service import Service

log = logging.getLogger("mesh-runtime")
PREFIX = "$SRV"
VERBS = ("PING", "INFO", "STATS")

try:
    RUNTIME_VERSION = version("mesh-runtime")
except PackageNotFoundError:  # run from a source tree that was never installed
    RUNTIME_VERSION = "0.1.0"


def endpoint_name(name: str) -> str:
    """ADR-32 endpoint names are [A-Za-z0-9_-]+: dots become underscores."""
    return name.replace(".", "_")


class Served(Protocol):
    """What the responder reads of the server: its services, mesh and identity."""

    services: dict[str, Service]
    instance_id: str
    generation: int

    @property
    def mesh_name(self) -> str: ...


class MicroResponder:
    """Answers the $SRV verbs for one `up` process."""

    def __init__(self, nc: Client, server: Served):
        self.nc = nc
        self.server = server
        self.started = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self.subscriptions: list[Subscription] = []
        self.bodies = BodyCache()
        self.budget = ByteBudget()

    async def start(self) -> None:
        name, instance = self.server.mesh_name, self.server.instance_id
        for verb in VERBS:
            for subject in (f"{PREFIX}.{verb}", f"{PREFIX}.{verb}.{name}",
                            f"{PREFIX}.{verb}.{name}.{instance}"):
                self.subscriptions.append(await self.nc.subscribe(
                    subject, cb=self._answerer(verb)))

    async def stop(self) -> None:
        for subscription in self.subscriptions:
            with contextlib.suppress(Exception):  # the connection is closing
                await subscription.unsubscribe()
        self.subscriptions.clear()

    def _answerer(self, verb: str) -> Any:
        build = {"PING": self.ping, "INFO": self.info, "STATS": self.stats}[verb]

        async def answer(msg: Msg) -> None:
            if not msg.reply or msg.reply.startswith("$"):
                return  # nobody to answer, or a system subject we never publish to
            expected = self.bodies.size(verb)
            if not self.budget.take(expected):
                return  # past the budget: a flood is dropped before any work
            body = self.bodies.get(verb, self._token(verb), lambda: self._fit(build()))
            self.budget.owe(len(body) - expected)
            try:
                await self.nc.publish(msg.reply, body)
            except Exception as exc:  # the connection is down; the asker will retry
                log.debug("could not answer $SRV.%s: %s", verb, exc)

        return answer

    def _token(self, verb: str) -> tuple[int, ...]:
        """What the body of `verb` depends on, cheap to read: while it is the same, the
        body built before is the body."""
        server = self.server
        services = list(server.services.values())
        if verb == "PING":
            return (server.generation,)
        if verb == "INFO":
            return server.generation, len(services), id(server.services)
        return (server.generation, len(services), sum(s.stats.requests for s in services),
                sum(s.in_flight for s in services))

    def _identity(self, kind: str) -> dict[str, Any]:
        return {"type": f"io.nats.micro.v1.{kind}_response", "name": self.server.mesh_name,
                "id": self.server.instance_id, "version": RUNTIME_VERSION,
                "metadata": {"runtime": "mesh-runtime",
                             "generation": str(self.server.generation)}}

    def ping(self) -> dict[str, Any]:
        return self._identity("ping")

    def info(self) -> dict[str, Any]:
        endpoints = [{
            "name": endpoint_name(name), "subject": p.agent_subject(name),
            "queue_group": p.queue_group(name), "metadata": _metadata(service),
        } for name, service in list(self.server.services.items())]
        return {**self._identity("info"), "description":
                f"mesh-runtime serving mesh '{self.server.mesh_name}'", "endpoints": endpoints}

    def stats(self) -> dict[str, Any]:
        endpoints = []
        for name, service in list(self.server.services.items()):
            stats = service.stats
            endpoints.append({
                "name": endpoint_name(name), "subject": p.agent_subject(name),
                "queue_group": p.queue_group(name), "num_requests": stats.requests,
                "num_errors": stats.errors, "last_error": stats.last_error,
                "processing_time": stats.total_ns,
                "average_processing_time": stats.average_ns,
                "data": endpoint_data(stats, service.in_flight),
            })
        return {**self._identity("stats"), "started": self.started, "endpoints": endpoints}

    def _fit(self, response: dict[str, Any]) -> bytes:
        """The response, within the server's max_payload: a huge mesh leaves out idle
        endpoints (no requests yet, nothing in flight) first, then cuts the list."""
        body = json.dumps(response).encode()
        limit = self.nc.max_payload - 512
        if len(body) <= limit or "endpoints" not in response:
            return body
        busy = [e for e in response["endpoints"]
                if e.get("num_requests") or (e.get("data") or {}).get("in_flight")]
        response = {**response, "endpoints": busy, "metadata": {
            **response["metadata"], "endpoints_left_out": "idle"}}
        body = json.dumps(response).encode()
        while len(body) > limit and response["endpoints"]:
            keep = len(response["endpoints"]) * limit // len(body) - 1
            response["endpoints"] = response["endpoints"][:max(keep, 0)]
            response["metadata"]["endpoints_left_out"] = "some"
            body = json.dumps(response).encode()
        return body


def _metadata(service: Service) -> dict[str, str]:
    definition = service.definition
    kind = "agent" if hasattr(definition, "handler") else "pipeline"
    return {"agent": service.name, "kind": kind,
            "streaming": "true" if definition.streaming else "false"}

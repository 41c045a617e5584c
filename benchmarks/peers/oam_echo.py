"""The peer: an OpenAgentMesh 0.2 echo agent with a pydantic model in and out.

Usage: python benchmarks/peers/oam_echo.py NATS_URL [--io]   (serves bench.oam; needs
JetStream). With --io it also serves bench.oam-io, the same echo after 1 ms of simulated
I/O (OpenAgentMesh awaits the handler inside the subscription callback: one at a time).
"""

from __future__ import annotations

import asyncio
import sys

from openagentmesh import AgentMesh, AgentSpec
from pydantic import BaseModel

IO_SECONDS = 0.001  # the simulated I/O (a database or model call)


class Echo(BaseModel):
    message: str
    n: int = 0


def main(url: str, io: bool) -> None:
    mesh = AgentMesh(url)

    @mesh.agent(AgentSpec(name="bench.oam", description="Echoes its input (benchmark peer)."))
    async def echo(req: Echo) -> Echo:
        return req

    if io:

        @mesh.agent(
            AgentSpec(
                name="bench.oam-io",
                description="Echoes its input after 1 ms of simulated I/O (benchmark peer).",
            )
        )
        async def echo_io(req: Echo) -> Echo:
            await asyncio.sleep(IO_SECONDS)
            return req

    mesh.run()


if __name__ == "__main__":
    main(sys.argv[1], "--io" in sys.argv[2:])

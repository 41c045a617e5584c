"""The peer: an OpenAgentMesh 0.2 echo agent with a pydantic model in and out.

Usage: python benchmarks/peers/oam_echo.py NATS_URL   (serves bench.oam; needs JetStream)
"""

from __future__ import annotations

import sys

from openagentmesh import AgentMesh, AgentSpec
from pydantic import BaseModel


class Echo(BaseModel):
    message: str
    n: int = 0


def main(url: str) -> None:
    mesh = AgentMesh(url)

    @mesh.agent(AgentSpec(name="bench.oam", description="Echoes its input (benchmark peer)."))
    async def echo(req: Echo) -> Echo:
        return req

    mesh.run()


if __name__ == "__main__":
    main(sys.argv[1])

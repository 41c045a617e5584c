"""Hot reload: placeholder until the reload issue lands."""

from __future__ import annotations

import asyncio

from runtime.mesh import Mesh
from runtime.server import MeshServer


async def watch_and_apply(server: MeshServer, mesh: Mesh) -> None:
    await asyncio.Event().wait()

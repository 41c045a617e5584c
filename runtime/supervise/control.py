"""The line between `up`'s supervisor and each worker: JSON messages over a socket pair.

The worker finds its end in the environment variable WORKER_ENV (a file descriptor
number). A worker's log lines go to the terminal as usual; this line carries only
what the supervisor acts on. Messages, one JSON object per line, by `kind`:

  supervisor -> worker
    start     {index, generation, announce}   load the mesh and serve
    nats      {url} or {error}                 the embedded server, as asked
  worker -> supervisor
    embedded  {port, store_dir, folder}        the file wants an embedded server
    ready     {agents, pipelines, url, generation, files}
    reloaded  {generation, files}              a mesh.yaml edit applied as a diff
    stale     {}                               an edit names code this interpreter
                                               has only in an older version
    retired   {}                               stopping: it takes no new requests
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

WORKER_ENV = "MESH_RUNTIME_WORKER_FD"
# A worker whose connection NATS closed for good exits with this; `up` then stops and
# exits with it too (the cause, like a revoked user, is the server's: an outer
# supervisor restarts `up` when it makes sense).
EXIT_CONNECTION_LOST = 3
LINE_LIMIT = 1 << 22  # a ready message lists every file of user code


def worker_fd() -> int | None:
    """This process's end of the line, if a supervisor started it as a worker; taken out
    of the environment so that a handler's own child processes do not see it."""
    value = os.environ.pop(WORKER_ENV, None)
    return int(value) if value and value.isdigit() else None


class Channel:
    """One end of the line: send a message, receive the next (None once the other end closed)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, sock: Any) -> Channel:
        reader, writer = await asyncio.open_connection(sock=sock, limit=LINE_LIMIT)
        return cls(reader, writer)

    def send(self, kind: str, **fields: Any) -> None:
        if self.writer.is_closing():
            return  # the other end is gone; it has nothing left to hear
        self.writer.write(json.dumps({"kind": kind, **fields}).encode() + b"\n")

    async def receive(self) -> dict[str, Any] | None:
        try:
            line = await self.reader.readline()
            message = json.loads(line) if line else None
        except (ConnectionError, ValueError):
            return None
        return message if isinstance(message, dict) else None

    def close(self) -> None:
        self.writer.close()

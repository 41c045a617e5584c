"""The MCP server's stdin and stdout: lines read on the event loop, and messages too deep
to parse answered here.

The SDK's own stdin reader blocks a thread on `readline`, which a Ctrl-C cannot end
(the event loop waits for the thread), and a message nested deeper than its JSON parser
allows is dropped without an answer, so the client waits forever. Read here, a line is
awaited like any socket (Ctrl-C ends `mcp` at once), and a request nested past
MAX_DEPTH gets a JSON-RPC error under its own id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

log = logging.getLogger("mesh-runtime")

MAX_DEPTH = 100  # the SDK's parser refuses JSON nested a little past 100 levels
LINE_LIMIT = 64 << 20  # a longer line is refused, not buffered without end
INVALID_REQUEST, INVALID_PARAMS = -32600, -32602


class Output:
    """Standard output as the SDK writes to it (one JSON message per line)."""

    def __init__(self) -> None:
        self.buffer = sys.stdout.buffer

    async def write(self, text: str) -> None:
        self.buffer.write(text.encode())

    async def flush(self) -> None:
        self.buffer.flush()

    async def answer(self, message: dict[str, Any]) -> None:
        await self.write(json.dumps(message) + "\n")
        await self.flush()


class Lines:
    """Standard input's lines, for `async for`; too-deep requests answered on `out`."""

    def __init__(self, reader: asyncio.StreamReader, out: Output):
        self.reader = reader
        self.out = out

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        while True:
            try:
                line = await self.reader.readline()
            except ValueError:  # past LINE_LIMIT: the line is skipped
                await self.out.answer(_error(None, INVALID_REQUEST,
                                             f"a message may be at most {LINE_LIMIT} bytes"))
                continue
            if not line:
                raise StopAsyncIteration
            text = line.decode("utf-8", errors="replace")
            refusal = _too_deep(text)
            if refusal is None:
                return text
            if refusal:  # empty: a notification, nobody to answer
                await self.out.answer(refusal)


@contextlib.asynccontextmanager
async def stdio() -> AsyncIterator[tuple[Lines | None, Output | None]]:
    """(stdin, stdout) for the SDK's stdio_server; (None, None) where stdin is a regular
    file (the SDK's own reader, then)."""
    mode = os.fstat(0).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
        yield None, None
        return
    blocking = os.get_blocking(0)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", closefd=False))
    try:
        out = Output()
        yield Lines(reader, out), out
    finally:
        transport.close()
        with contextlib.suppress(OSError):
            os.set_blocking(0, blocking)  # a terminal's next reader expects it as it was


def _too_deep(text: str) -> dict[str, Any] | None:
    """None for a line nested at most MAX_DEPTH deep; else the JSON-RPC error to answer
    (empty when the message has no id to answer under)."""
    if text.count("{") + text.count("[") <= MAX_DEPTH:
        return None
    try:
        message = json.loads(text)
    except RecursionError:
        return _error(None, INVALID_REQUEST, f"the message is nested more than {MAX_DEPTH} "
                      "levels deep")
    except ValueError:
        return None  # not JSON: the SDK's parser says so
    if _depth(message) <= MAX_DEPTH:
        return None
    ident = message.get("id") if isinstance(message, dict) else None
    log.warning("mcp: refused a message nested more than %d levels deep", MAX_DEPTH)
    if ident is None or not isinstance(ident, (str, int)):
        return {}
    return _error(ident, INVALID_PARAMS, f"the message is nested more than {MAX_DEPTH} levels "
                  "deep; flatten the arguments")


def _depth(value: Any) -> int:
    deepest = 0
    for depth in _depths(value):
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
    return deepest


def _depths(value: Any) -> Iterator[int]:
    """The depth of every object and array in `value` (without recursion)."""
    stack = [(1, value)]
    while stack:
        depth, item = stack.pop()
        if isinstance(item, dict | list):
            yield depth
            stack.extend((depth + 1, child) for child in
                         (item.values() if isinstance(item, dict) else item))


def _error(ident: str | int | None, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": ident, "error": {"code": code, "message": message}}

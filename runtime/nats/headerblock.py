"""Publishing with a header block built once, where only the request id changes.

nats-py's `publish()` writes the header block anew for every message: per header a strip,
a regex match, a translate and two encodes. For a reply's three headers that was the
biggest cost of a request beyond raw nats-py (see benchmarks/README.md). A service's
headers are known when it starts, so their bytes are made then, with nats-py's own rules,
and each reply only splices in its request id.

This leans on nats-py internals: `Client._send_command`, `_flush_queue`, `_flush_pending`,
`_status` and `stats`, the same steps `publish()` takes after encoding its headers;
tests/test_headerblock.py pins each of them. Whenever the connection is not plainly
connected (reconnecting, draining, closed), `publish()` itself is used: it knows those
states.
"""

from __future__ import annotations

import asyncio
import re

from nats.aio.client import Client
from nats.errors import MaxPayloadError

from runtime.core import protocol as p

_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # what nats-py accepts as a header name
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})  # what nats-py does to a value's newlines


def header_lines(headers: dict[str, str]) -> bytes:
    """`k: v\\r\\n` lines exactly as nats-py writes them (values stripped, newlines spaced)."""
    lines = []
    for key, value in headers.items():
        key = key.strip()
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a header name: {key!r}")
        lines.append(f"{key}: {value.strip().translate(_NEWLINES)}\r\n".encode())
    return b"".join(lines)


class HeaderBlock:
    """The header block of a service's messages: fixed headers, then the request id."""

    __slots__ = ("_head", "_tail", "fixed")

    def __init__(self, fixed: dict[str, str]):
        self.fixed = fixed  # for publish(), when the connection is not plainly connected
        self._head = b"NATS/1.0\r\n" + header_lines(fixed) + p.HDR_REQUEST_ID.encode() + b": "
        self._tail = b"\r\n\r\n"

    def bytes_for(self, request_id: str) -> bytes:
        """The block for `request_id` (already checked: A-Z, a-z, 0-9, _ and - only)."""
        return self._head + request_id.encode() + self._tail

    def headers_for(self, request_id: str) -> dict[str, str]:
        return {**self.fixed, p.HDR_REQUEST_ID: request_id}


_INTERNALS = ("_status", "_max_payload", "stats", "_send_command", "_flush_queue", "_flush_pending",
              "_pending", "_pending_data_size", "_max_pending_size")
_fast: bool | None = None  # whether this nats-py has the internals above (checked once)


def _has_internals(nc: Client) -> bool:
    global _fast
    if _fast is None:  # another nats-py version: fall back to publish() rather than break
        _fast = all(hasattr(nc, name) for name in _INTERNALS) and hasattr(Client, "CONNECTED")
    return _fast


async def publish(nc: Client, subject: str, body: bytes, block: HeaderBlock,
                  request_id: str) -> None:
    """nc.publish(subject, body, headers=block.headers_for(request_id)), sooner."""
    if not _has_internals(nc) or nc._status != Client.CONNECTED:
        # Not connected, draining or closed: nats-py's publish() says what to do.
        await nc.publish(subject, body, headers=block.headers_for(request_id))
        return
    headers = block.bytes_for(request_id)
    size = len(headers)
    if size + len(body) > nc._max_payload:  # the last size check, headers included
        raise MaxPayloadError
    command = b"".join((f"HPUB {subject} {size} {size + len(body)}\r\n".encode(), headers,
                        body, b"\r\n"))
    nc.stats["out_msgs"] += 1
    nc.stats["out_bytes"] += len(body)
    await nc._send_command(command)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


def queue_plain(nc: Client, subject: str, body: bytes, reply: str = "") -> bool:
    """Queue a message without headers for nats-py's flusher, without awaiting anything;
    False (nothing queued) when the connection is not plainly connected or the message is
    too big. `subject` and `reply` are already checked by the caller (no spaces, no control
    characters). For messages that must never hold up their sender (run events)."""
    if (not _has_internals(nc) or nc._status != Client.CONNECTED or len(body) > nc._max_payload
            or nc._pending_data_size > nc._max_pending_size):  # the socket is not keeping up
        return False
    head = f"PUB {subject} {reply} {len(body)}\r\n" if reply else f"PUB {subject} {len(body)}\r\n"
    command = b"".join((head.encode(), body, b"\r\n"))
    nc.stats["out_msgs"] += 1
    nc.stats["out_bytes"] += len(body)
    nc._pending.append(command)
    nc._pending_data_size += len(command)
    if nc._flush_queue is not None and nc._flush_queue.empty():  # wake the flusher, as
        nc._flush_queue.put_nowait(asyncio.get_running_loop().create_future())  # nats-py does
    return True

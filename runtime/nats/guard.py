"""The serving connection's last check before anything goes out.

`up` connects with nats-py's subject checks off (a reply's hot path writes its own
HPUB, see headerblock.py), so a subject is spliced into a protocol line as is. Names
from payloads, handlers and expressions are checked where they enter (core.names,
core.bus.state_key_problem) with a clear `invalid_input`; this is the backstop under
every other publish of the connection (calls, broadcasts, errors, KV and JetStream
requests): a subject with whitespace or a control character, or one longer than a
protocol line allows, is refused, and so is a message over the server's max_payload
with its headers (nats-py measures the body alone). Refused means an exception for the
caller, never a line the server would answer with `-ERR` and a closed connection.

`check_fits` is the size check with a clear error, for what a handler hands over
(ctx.call, ctx.broadcast, ctx.state): too big is `invalid_input`, and nothing is sent.
"""

from __future__ import annotations

import re

from nats.aio.client import Client
from nats.errors import BadSubjectError, MaxPayloadError

from runtime.core import protocol as p

# Bytes of the headers nats-py or a KV compare-and-set adds on its own (Nats-Expected-*).
KV_HEADER_ROOM = 128


def header_size(headers: dict[str, str] | None) -> int:
    """Bytes of a header block as nats-py writes it: `NATS/1.0\\r\\n`, `k: v\\r\\n`..., `\\r\\n`."""
    if not headers:
        return 0
    return 12 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())


def oversize(nc: Client, body: bytes, headers: dict[str, str] | None, extra: int = 0) -> int:
    """The message's size with headers when it is over the server's max_payload, else 0."""
    size = len(body) + header_size(headers) + extra
    return size if size > nc.max_payload else 0


def check_fits(nc: Client, body: bytes, headers: dict[str, str] | None, what: str,
               extra: int = 0) -> None:
    """Raise `invalid_input` (nothing sent) when `body` with `headers` would not fit."""
    size = oversize(nc, body, headers, extra)
    if size:
        raise p.MeshError(p.INVALID_INPUT, f"{what} is {size} bytes with headers, over the NATS "
                          f"server's max_payload of {nc.max_payload} bytes",
                          details={"size": size, "max_payload": nc.max_payload})


MAX_SUBJECT_LENGTH = 1536  # a name (at most 1024) with its prefix, well inside 4 KB a line
_SUBJECT = re.compile(r"[^\x00-\x20\x7f]{1," + str(MAX_SUBJECT_LENGTH) + "}")
is_subject = _SUBJECT.fullmatch


class GuardedClient(Client):
    """A nats-py Client whose `publish` (and so `request`, JetStream and KV) checks the
    subject, the reply subject and the size with headers first."""

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "",
                      headers: dict[str, str] | None = None) -> None:
        if not is_subject(subject) or (reply and not is_subject(reply)):
            raise BadSubjectError
        if headers and len(payload) + header_size(headers) > self._max_payload:
            raise MaxPayloadError
        await super().publish(subject, payload, reply, headers)

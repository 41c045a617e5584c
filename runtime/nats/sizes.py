"""The last size check before a publish: the NATS server answers a message bigger than its
`max_payload` (headers included) with `-ERR` and closes the connection, and nats-py checks
only the body. So whatever a handler or a caller hands over is measured, headers and all,
before it goes out; too big is `invalid_input` for whoever asked, and nothing is sent."""

from __future__ import annotations

from nats.aio.client import Client

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

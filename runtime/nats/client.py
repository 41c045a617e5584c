"""What `call` and `ls` do from any process: connect as a client and ask the mesh."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
from nats.aio.client import Client

from runtime.core import protocol as p
from runtime.core.names import name_problem
from runtime.core.text import mask_urls
from runtime.nats.caller import budget_header, call_agent, request
from runtime.nats.connection import AUTH_REFUSED, is_auth_error
from runtime.nats.records import is_oversized


class UnreachableError(RuntimeError):
    """No NATS server answered at the URL."""


async def open_client(url: str, timeout: float = 5) -> Client:
    """A client connection, or UnreachableError within `timeout` seconds."""

    async def quiet(exc: Exception) -> None:
        pass  # connection errors are reported once, below, in the user's words

    try:
        # nats-py retries the first connect forever unless bounded: bound it by time.
        async with asyncio.timeout(timeout):
            return await nats.connect(url, allow_reconnect=False, connect_timeout=2,
                                      max_reconnect_attempts=1, error_cb=quiet,
                                      name="mesh-runtime client")
    except Exception as exc:
        if is_auth_error(exc):  # it is running; the credentials are wrong
            raise UnreachableError(f"cannot connect to NATS at {mask_urls(url)}: "
                                   f"{AUTH_REFUSED}") from None
        raise UnreachableError(
            f"cannot reach NATS at {mask_urls(url)} ({mask_urls(str(exc)) or type(exc).__name__}):"
            " is `mesh-runtime up` running? Point at another server with --nats or NATS_URL"
        ) from None


async def catalog(nc: Client) -> list[dict[str, Any]] | None:
    """The catalog's entries, or None when the server has no JetStream (discovery off)."""
    js = nc.jetstream(timeout=3)
    try:
        kv = await js.key_value(p.CATALOG_BUCKET)
    except Exception:
        try:
            await js.account_info()
        except Exception:
            return None
        return []
    try:
        entry = await kv.get(p.CATALOG_KEY)
    except Exception:
        return []
    try:  # any process on the bus may write the catalog: take only well-formed entries
        data = json.loads(entry.value or b"[]")
    except (ValueError, RecursionError):
        return []
    if not isinstance(data, list):
        return []
    return sorted((e for e in data if isinstance(e, dict) and isinstance(e.get("name"), str)
                   and not is_oversized(e)), key=lambda e: str(e["name"]))


async def is_streaming(nc: Client, name: str) -> bool:
    entries = await catalog(nc) or []
    return any(e.get("name") == name and e.get("streaming") for e in entries)


async def call(nc: Client, name: str, payload: Any, timeout: float,
               request_id: str | None = None) -> Any:
    return await call_agent(nc, name, payload, timeout, request_id)


async def call_capability(nc: Client, capability: str, payload: Any,
                          timeout: float) -> tuple[Any, str]:
    """The reply of one agent offering `capability`, and that agent's name."""
    reply = await request(nc, capability, payload, timeout, capability=True)
    source = str((reply.headers or {}).get(p.HDR_SOURCE, "?"))
    return (json.loads(reply.data) if reply.data else {}), source


async def stream(nc: Client, name: str, payload: Any, timeout: float) -> AsyncIterator[Any]:
    """Chunks of a streaming agent, in order; raises MeshError on an error or a gap."""
    if (problem := name_problem(name)) is not None:
        raise p.MeshError(p.INVALID_INPUT, problem)
    request_id = uuid.uuid4().hex
    chunks = p.stream_subject(request_id)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    sub = await nc.subscribe(chunks, cb=queue.put)
    try:
        # Agents answer on the stream subject and ignore the reply subject; naming it lets
        # the NATS server say at once (status 503) that nobody serves `name`.
        await nc.publish(p.agent_subject(name), json.dumps(payload).encode(), reply=chunks,
                         headers={p.HDR_REQUEST_ID: request_id, p.HDR_STREAM: "true",
                                  p.HDR_TIMEOUT: budget_header(timeout)})
        expected = 0
        async with asyncio.timeout(timeout):
            while True:
                msg = await queue.get()
                headers = msg.headers or {}
                if headers.get("Status") == "503" and not msg.data:
                    raise p.MeshError(p.NOT_FOUND, f"no agent named '{name}' is serving",
                                      agent=name, request_id=request_id)
                if headers.get(p.HDR_STATUS) == "error":
                    raise p.MeshError.from_body(msg.data, agent=name, request_id=request_id)
                if headers.get(p.HDR_STREAM_END) == "true":
                    return
                seq = int(headers.get(p.HDR_STREAM_SEQ, "-1"))
                if seq != expected:
                    raise p.MeshError("chunk_sequence_error",
                                      f"expected chunk {expected}, got {seq}", agent=name)
                expected += 1
                yield json.loads(msg.data)
    except TimeoutError:
        raise p.MeshError(p.TIMEOUT, f"'{name}' stream did not end within {timeout:g}s",
                          agent=name, request_id=request_id) from None
    finally:
        with contextlib.suppress(Exception):  # the connection may already be gone
            await sub.unsubscribe()

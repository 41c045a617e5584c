"""Which NATS to use, and a connection that reconnects by itself and says so."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from runtime.load.model import NatsSettings

log = logging.getLogger("mesh-runtime")
EMBEDDED = "embedded"


def choose_servers(settings: NatsSettings, flag: str | None) -> list[str] | None:
    """`--nats` beats NATS_URL, which beats the file; None means start an embedded server."""
    for source in (flag, os.environ.get("NATS_URL")):
        if source:
            return None if source == EMBEDDED else _split(source)
    if settings.servers:
        return list(settings.servers)
    if settings.url and settings.url != EMBEDDED:
        return _split(settings.url)
    return None


def _split(urls: str) -> list[str]:
    return [u.strip() for u in urls.split(",") if u.strip()]


def connect_options(settings: NatsSettings, folder: Path) -> dict[str, Any]:
    """nats.connect keyword arguments for the file's credentials and TLS settings."""
    options: dict[str, Any] = {}
    if settings.token:
        options["token"] = settings.token
    if settings.user:
        options["user"] = settings.user
        options["password"] = settings.password or ""
    if settings.creds:
        options["user_credentials"] = str(folder / settings.creds)
    if settings.tls:
        context = ssl.create_default_context(
            cafile=str(folder / settings.tls.ca) if settings.tls.ca else None)
        if settings.tls.cert:
            context.load_cert_chain(str(folder / settings.tls.cert),
                                    str(folder / settings.tls.key) if settings.tls.key else None)
        options["tls"] = context
    return options


async def connect(servers: list[str], *, name: str, first_timeout: float = 10,
                  **options: Any) -> Client:
    """Connect (within `first_timeout`), then reconnect forever: a broker restart must not
    end the process. Raises TimeoutError or the connection error when the first try fails."""

    async def disconnected() -> None:
        if not (nc.is_draining or nc.is_closed):  # a drain at shutdown is no news
            log.warning("disconnected from NATS; reconnecting")

    async def reconnected() -> None:
        log.info("reconnected to NATS at %s; serving again", nc.connected_url.netloc
                 if nc.connected_url else "?")

    async def error(exc: Exception) -> None:
        log.debug("nats: %s", exc)

    async with asyncio.timeout(first_timeout):
        nc = await nats.connect(
            servers=servers, name=name, allow_reconnect=True, max_reconnect_attempts=-1,
            reconnect_time_wait=0.5, connect_timeout=5, disconnected_cb=disconnected,
            reconnected_cb=reconnected, error_cb=error,
            # Subjects are checked once, at load time (agent names); replies are inboxes.
            skip_subject_validation=True, **options)
    return nc

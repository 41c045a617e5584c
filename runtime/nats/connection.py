"""Which NATS to use, and a connection that reconnects by itself and says so."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client

from runtime.core.text import mask_urls
from runtime.load.model import NatsSettings
from runtime.nats.guard import GuardedClient

log = logging.getLogger("mesh-runtime")
EMBEDDED = "embedded"
AUTH_REFUSED = "authorization violation: check the user, password, token or creds"
REFUSALS_BEFORE_CLOSING = 3  # refused logins in a row, once connected, before giving up


class AuthorizationRefused(ConnectionError):
    """The server refused our credentials: retrying cannot help."""

    def __init__(self) -> None:
        super().__init__(AUTH_REFUSED)


def is_auth_error(exc: BaseException) -> bool:
    return isinstance(exc, nats.errors.AuthorizationError) or (
        "authorization violation" in str(exc).lower())


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
                  on_closed: Callable[[str], None] | None = None,
                  on_reconnected: Callable[[], None] | None = None, **options: Any) -> Client:
    """Connect (within `first_timeout`), then reconnect forever: a broker restart must not
    end the process. Raises TimeoutError, AuthorizationRefused (at once: retrying the same
    credentials cannot help), or the connection error when the first try fails.

    nats-py closes the connection for good, without reconnecting, on most `-ERR`s from
    the server (a revoked user, say): `on_closed(reason)` is then called, so the caller
    never goes on running deaf. A close the caller asked for (drain, close) calls it too.
    `on_reconnected()` is called after each reconnect, once subscriptions are replayed.
    """
    refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    refusals = 0  # consecutive refused logins while reconnecting
    closing: set[asyncio.Task[None]] = set()  # holds the task that closes, until it is done

    async def disconnected() -> None:
        if not (nc.is_draining or nc.is_closed):  # a drain at shutdown is no news
            log.warning("disconnected from NATS; reconnecting")

    async def reconnected() -> None:
        nonlocal refusals
        refusals = 0
        if on_reconnected is not None:
            on_reconnected()
        log.info("reconnected to NATS at %s; serving again", mask_urls(
            nc.connected_url.geturl()) if nc.connected_url else "?")

    async def closed() -> None:
        if on_closed is not None:
            error = nc.last_error
            on_closed(AUTH_REFUSED if error and is_auth_error(error) else
                      mask_urls(str(error) or type(error).__name__) if error else "closed")

    async def error(exc: Exception) -> None:
        nonlocal refusals
        log.debug("nats: %s", mask_urls(str(exc)))
        if not is_auth_error(exc):
            return
        if not connecting.done():
            if not refused.done():
                refused.set_result(None)
            return
        # Our login was revoked: nats-py would retry it forever, deaf. Close instead, so
        # `on_closed` tells the caller, who can exit and be restarted. (From a task of its
        # own: closing cancels the reconnect loop, which is what calls this callback.)
        refusals += 1
        if refusals == REFUSALS_BEFORE_CLOSING:
            closing.add(asyncio.get_running_loop().create_task(nc.close()))

    nc = GuardedClient()  # checks every publish's subject and size itself (guard.py)
    connecting: asyncio.Future[Any] = asyncio.ensure_future(nc.connect(
        servers=servers, name=name, allow_reconnect=True, max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]  # nats-py takes a float
        connect_timeout=5, disconnected_cb=disconnected,
        reconnected_cb=reconnected, error_cb=error, closed_cb=closed,
        # Names are checked at load time or where they enter (core.names), and every
        # publish by GuardedClient: nats-py's own, weaker check would be a second pass.
        skip_subject_validation=True, **options))
    await asyncio.wait({connecting, refused}, timeout=first_timeout,
                       return_when=asyncio.FIRST_COMPLETED)
    if connecting.done():
        connecting.result()  # raises the connection error, if any
        return nc
    connecting.cancel()
    with contextlib.suppress(BaseException):
        await connecting
    if refused.done():
        raise AuthorizationRefused()
    raise TimeoutError()

"""The supervisor's embedded nats-server, started while the first worker is importing.

A worker asks for the embedded server once it has loaded and checked the mesh file;
starting the server only then would add its start-up to `up`'s. So the supervisor
reads the file's `nats:` section itself (plain YAML, no checks), and when the file will
want an embedded server, starts it at once. The worker's ask, made from the checked
file, has the last word: a server started on a wrong guess is stopped and the right
one started, and a guess nobody asked for is stopped once the first workers serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import yaml

from runtime.nats.embedded import NatsServer
from runtime.supervise.startup import StartupError, embedded_server

GUESS_LIMIT = 1 << 20  # a bigger file is left to the worker's loader
DEFAULT_PORT = 4222
Settings = tuple[int, "str | None", Path]  # port, store_dir, the mesh file's folder


class EmbeddedServer:
    """At most one embedded nats-server for every worker of one `up`."""

    def __init__(self) -> None:
        self.server: NatsServer | None = None
        self._settings: Settings | None = None
        self._ahead: asyncio.Future[NatsServer | StartupError] | None = None
        self._lock = asyncio.Lock()

    def start_ahead(self, mesh_file: Path, nats_flag: str | None) -> None:
        """Start the server now if the file will ask for one (by the look of it)."""
        settings = _wanted(mesh_file, nats_flag)
        if settings is not None:
            self._settings = settings
            self._ahead = asyncio.ensure_future(asyncio.to_thread(_start, settings))

    async def url(self, port: int, store_dir: str | None, folder: Path) -> str:
        """The server for these settings (the worker's, from the checked file)."""
        async with self._lock:
            if self._ahead is not None:
                guessed, self._ahead = await self._ahead, None
                if self._settings == (port, store_dir, folder):
                    if isinstance(guessed, StartupError):
                        raise guessed
                    self.server = guessed
                elif isinstance(guessed, NatsServer):
                    await asyncio.to_thread(guessed.stop)
            if self.server is None:
                self.server = await asyncio.to_thread(embedded_server, port, store_dir, folder)
            return self.server.url

    async def drop_unasked(self) -> None:
        """Stop a server started ahead that no worker asked for."""
        if self._ahead is not None:
            guessed, self._ahead = await self._ahead, None
            if isinstance(guessed, NatsServer):
                await asyncio.to_thread(guessed.stop)

    async def stop(self) -> None:
        await self.drop_unasked()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)


def _start(settings: Settings) -> NatsServer | StartupError:
    try:
        return embedded_server(*settings)
    except StartupError as exc:
        return exc  # said when a worker asks: it may not (the guess may be wrong)


def _wanted(mesh_file: Path, nats_flag: str | None) -> Settings | None:
    """What `up` would start by the look of its flag, NATS_URL and the file; None when it
    would not start a server, or the file is not plain enough to tell."""
    source = nats_flag or os.environ.get("NATS_URL")
    if source and source != "embedded":
        return None
    with contextlib.suppress(OSError, yaml.YAMLError):
        if mesh_file.stat().st_size <= GUESS_LIMIT:
            doc = yaml.safe_load(mesh_file.read_text())
            return _embedded_settings(doc, mesh_file, forced=source == "embedded")
    return None


def _embedded_settings(doc: object, mesh_file: Path, forced: bool) -> Settings | None:
    if not isinstance(doc, dict):
        return None
    nats = doc.get("nats") or {}
    if not isinstance(nats, dict) or "${" in repr(nats):
        return None  # values from the environment: left to the worker
    if not forced and (nats.get("servers") or nats.get("url") not in (None, "embedded")):
        return None
    embedded = nats.get("embedded") or {}
    port, store = embedded.get("port", DEFAULT_PORT), embedded.get("store_dir")
    if not isinstance(port, int) or not (store is None or isinstance(store, str)):
        return None
    return port, store, mesh_file.resolve().parent

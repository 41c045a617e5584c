"""What the app holds while it runs: the NATS client, the watchers, the shutdown event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TypeVar

from nats.aio.client import Client
from starlette.requests import Request

from runtime.ui.errors_feed import ErrorsFeed
from runtime.ui.mesh_view import MeshWatch
from runtime.ui.settings import Settings

T = TypeVar("T")


@dataclass
class UiState:
    nc: Client
    settings: Settings
    watch: MeshWatch
    errors: ErrorsFeed = field(default_factory=ErrorsFeed)
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)  # set once, by the app
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def of(cls, request: Request) -> UiState:
        state: UiState = request.app.state.ui
        return state

    async def start(self) -> None:
        await self.errors.start(self.nc)
        self.tasks.append(asyncio.create_task(self.watch.run(), name="mesh watch"))

    async def stop(self) -> None:
        """Ends every live stream first (so the server is not kept waiting), then the rest."""
        self.end_streams()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.errors.stop()

    def end_streams(self) -> None:
        self.shutdown.set()
        self.watch.topic.close()
        self.errors.topic.close()


async def until_shutdown(items: AsyncIterator[T], shutdown: asyncio.Event) -> AsyncIterator[T]:
    """`items` until they end or `shutdown` is set (a run's events may wait for hours)."""
    stopping = asyncio.ensure_future(shutdown.wait())
    try:
        while True:
            step = asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait({step, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if step not in done:
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
                return
            try:
                yield step.result()
            except StopAsyncIteration:
                return
    finally:
        stopping.cancel()
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()

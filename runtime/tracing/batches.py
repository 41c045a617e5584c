"""The mesh's finished spans, queued and sent by a thread of their own.

Like the SDK's BatchSpanProcessor (and read from its variables): a batch leaves every
`delay` seconds, or at once when `size` spans wait; at most `limit` wait, and a span
that finds the queue full is dropped and counted, never logged one by one. A batch the
collector does not take is counted too. The request path only appends to a deque.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping

from runtime.tracing.spans import Record

log = logging.getLogger("mesh-runtime")


def _setting(environ: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


class Batches:
    """Call it with a Record (on the event loop's thread); `send` runs on its thread."""

    def __init__(self, send: Callable[[list[Record]], bool], where: str,
                 environ: Mapping[str, str] = os.environ):
        self.send = send
        self.where = where
        self.delay = _setting(environ, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000
        self.size = _setting(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
        self.limit = max(_setting(environ, "OTEL_BSP_MAX_QUEUE_SIZE", 2048), self.size)
        self.queue: deque[Record] = deque()
        self.dropped = 0  # queue full (written by the event loop's thread only)
        self.failed = 0  # not taken by the collector (written by the sending thread only)
        self._warned = False
        self._stop = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mesh-spans", daemon=True)
        self._thread.start()

    def __call__(self, record: Record) -> None:
        queue = self.queue
        if len(queue) >= self.limit:
            self.dropped += 1
            return
        queue.append(record)
        if len(queue) == self.size:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.delay)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        queue = self.queue
        while queue:
            batch = [queue.popleft() for _ in range(min(self.size, len(queue)))]
            try:
                taken = self.send(batch)
            except Exception:  # the exporter's own bug must not end this thread
                taken = False
            if not taken:
                self.failed += len(batch)
                self.warn()
            if self._stop and not taken:
                self.failed += len(queue)  # closing and the collector is away: no retries
                queue.clear()

    def warn(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning("tracing: the collector at %s took no spans; spans are dropped "
                        "and counted until it does (requests are not affected)", self.where)

    def close(self, timeout: float) -> None:
        """Send what waits, within `timeout` seconds."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)

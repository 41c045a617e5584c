"""Admission of requests to one served name: deadlines on arrival, the waiting line, and the
exact error each refusal gets.

A request runs at once while the name has a free slot (`concurrency`). Past that, up to
`queue` requests wait in a line, in arrival order, each with its deadline noted in the
process's Deadlines; one more is `overloaded` at once. A waiting request holds its raw
message only: no task, no decoded payload, so a full line costs a few hundred bytes plus
its bodies, and the line's length is the bound on what a flood can make the process keep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from nats.aio.msg import Msg

from runtime.core import protocol as p
from runtime.load.mesh import Endpoint
from runtime.serve.deadlines import Deadlines

# start(msg, definition, arrival, deadline, refusal): run a request, or answer its refusal
Start = Callable[[Msg, Endpoint, float, float, "p.MeshError | None"], None]

# What nats-py may buffer per subscription before our callback takes a message (it drops
# past that, and the caller times out): the callback only admits or refuses, so this fills
# only when the process is starved of CPU. Without a bound, a flood grows it without end.
PENDING_MSGS = 50_000
PENDING_BYTES = 32 * 1024 * 1024
YIELD_EVERY = 0.005  # seconds of answering refusals before the loop runs everything else

_SECONDS = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_SHOWN = 40  # how much of a malformed header an error repeats
STUCK_REPORT_DELAY = 0.1  # seconds: threads of one burst of overruns are logged as one line


class Waiting:
    """A request in the line: its message until it starts or its deadline passes."""

    __slots__ = ("_expire", "arrival", "deadline", "definition", "msg")

    def __init__(self, msg: Msg, definition: Endpoint, arrival: float, deadline: float,
                 expire: Callable[[Waiting], None]):
        self.msg: Msg | None = msg
        self.definition = definition
        self.arrival = arrival
        self.deadline = deadline
        self._expire = expire

    def cancel(self) -> None:
        """Its deadline passed while it waited (called by Deadlines)."""
        self._expire(self)


class Admission:
    """The slots and the waiting line of one served name.

    `start` runs a request (or answers its refusal) and counts its slot in `running`;
    `release` frees a slot and starts the oldest waiting requests that fit.
    """

    def __init__(self, name: str, deadlines: Deadlines, start: Start,
                 concurrency: Callable[[], int], logger: logging.Logger):
        self.name = name
        self.deadlines = deadlines
        self._start = start
        self._concurrency = concurrency  # the current definition's limit
        self.logger = logger
        self.running = 0  # slots taken: handlers running, and threads past their deadline
        self.waiting = 0  # requests in the line
        self.stuck = 0  # sync handler threads still running past their deadline
        self._line: deque[Waiting] = deque()  # oldest first; expired ones skipped lazily
        self._stuck_logged = 0.0
        self._stuck_report: asyncio.TimerHandle | None = None

    def admit(self, msg: Msg, definition: Endpoint) -> tuple[float, float, p.MeshError | None] | None:
        """A request's arrival, deadline and refusal (None: it may run now); None when it
        waits in the line instead."""
        arrival = time.monotonic()
        deadline = arrival + definition.timeout
        refusal = None
        headers = msg.headers
        if headers is not None:
            budget = headers.get(p.HDR_TIMEOUT)
            if budget is not None:
                deadline, refusal = caller_deadline(budget, definition, arrival, deadline)
        if refusal is None and self.running >= definition.concurrency:
            if self.park(msg, definition, arrival, deadline):
                return None
            refusal = queue_full_error(definition)
        return arrival, deadline, refusal

    def park(self, msg: Msg, definition: Endpoint, arrival: float, deadline: float) -> bool:
        """Put a request in the line; False when the line is full."""
        limit = definition.queue_limit
        if self.waiting >= limit:
            return False
        entry = Waiting(msg, definition, arrival, deadline, self._expire)
        self._line.append(entry)
        self.waiting += 1
        if len(self._line) > 2 * limit + 64:  # mostly expired entries: drop them
            self._line = deque(e for e in self._line if e.msg is not None)
        self.deadlines.add(entry, deadline)
        return True

    def _expire(self, entry: Waiting) -> None:
        """A waiting request's deadline passed: answer it; its handler never runs."""
        self.deadlines.done(entry)
        msg, entry.msg = entry.msg, None
        if msg is not None:
            self.waiting -= 1
            self._start(msg, entry.definition, entry.arrival, entry.deadline,
                        wait_error(entry.definition, entry.arrival, entry.deadline))

    def release(self) -> None:
        """A slot is free: start the oldest waiting requests that fit."""
        self.running -= 1
        while self.waiting and self.running < self._concurrency():
            entry = self._line.popleft()
            msg, entry.msg = entry.msg, None
            if msg is None:
                continue  # expired, already answered
            self.waiting -= 1
            self.deadlines.done(entry)
            refusal = (wait_error(entry.definition, entry.arrival, entry.deadline)
                       if entry.deadline <= time.monotonic() else None)
            self._start(msg, entry.definition, entry.arrival, entry.deadline, refusal)

    def hold(self, thread: Future[Any]) -> None:
        """A sync handler's thread runs past its deadline: it keeps a slot until it returns,
        so an agent never has more threads than its concurrency."""
        self.running += 1
        self.stuck += 1
        loop = asyncio.get_running_loop()

        def returned(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the process ends
                loop.call_soon_threadsafe(self._thread_returned)

        thread.add_done_callback(returned)
        if not self._stuck_report:  # one line for a burst, at most one a second
            self._stuck_report = loop.call_later(
                max(STUCK_REPORT_DELAY, self._stuck_logged + 1.0 - time.monotonic()),
                self._report_stuck)

    def _report_stuck(self) -> None:
        self._stuck_report = None
        self._stuck_logged = time.monotonic()
        if self.stuck:
            self.logger.warning(
                "'%s': a sync handler ran past its deadline and cannot be stopped: %d "
                "thread(s) stuck, holding %d of %d slots", self.name, self.stuck, self.stuck,
                self._concurrency())

    def _thread_returned(self) -> None:
        self.stuck -= 1
        self.release()


def caller_deadline(raw: str, definition: Endpoint, arrival: float,
                    deadline: float) -> tuple[float, p.MeshError | None]:
    """The deadline an `X-Mesh-Timeout` header sets (the smaller of it and the agent's),
    or the refusal it earns: `invalid_input` when malformed, `expired` when 0 or less."""
    if len(raw) > 32 or not _SECONDS.match(raw):
        shown = raw[:_SHOWN] + ("..." if len(raw) > _SHOWN else "")
        return deadline, p.MeshError(
            p.INVALID_INPUT, f"{p.HDR_TIMEOUT} must be a number of seconds, like 2.5 "
            f"(got {shown!r})", details={"header": p.HDR_TIMEOUT})
    budget = float(raw)
    if budget <= 0:
        return deadline, p.MeshError(
            p.EXPIRED, f"'{definition.name}' received the request after its caller's deadline "
            f"({p.HDR_TIMEOUT}: {raw})", details={"budget_s": budget})
    return min(deadline, arrival + budget), None


def queue_full_error(definition: Endpoint) -> p.MeshError:
    return p.MeshError(
        p.OVERLOADED, f"'{definition.name}' is at its concurrency limit "
        f"({definition.concurrency}) with {definition.queue_limit} requests waiting; "
        "try again later",
        details={"concurrency": definition.concurrency, "queue": definition.queue_limit})


def _caller_bound(definition: Endpoint, arrival: float, deadline: float) -> bool:
    """Whether the deadline is the caller's (shorter than the agent's own timeout)."""
    return deadline - arrival < definition.timeout


def wait_error(definition: Endpoint, arrival: float, deadline: float) -> p.MeshError:
    """The answer to a request whose deadline passed before it could start."""
    if _caller_bound(definition, arrival, deadline):
        return p.MeshError(
            p.EXPIRED, f"'{definition.name}' could not start before its caller's deadline "
            f"({deadline - arrival:g}s): every slot ({definition.concurrency}) stayed busy",
            details={"budget_s": round(deadline - arrival, 6)})
    return p.MeshError(
        p.OVERLOADED, f"'{definition.name}' stayed at its concurrency limit "
        f"({definition.concurrency}) for {definition.timeout:g}s",
        details={"concurrency": definition.concurrency, "queue": definition.queue_limit})


def run_error(definition: Endpoint, arrival: float, deadline: float) -> p.MeshError:
    """The answer to a request whose handler was still running at its deadline."""
    if _caller_bound(definition, arrival, deadline):
        return p.MeshError(
            p.TIMEOUT, f"'{definition.name}' did not finish before its caller's deadline "
            f"({deadline - arrival:g}s)")
    return p.MeshError(p.TIMEOUT, f"'{definition.name}' did not finish within "
                       f"{definition.timeout:g}s")

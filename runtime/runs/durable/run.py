"""One durable run while it runs here: the journal's recorder, made durable.

The engine owns the step protocol in one place (`runtime.pipeline.steps._run_body`): a step
whose output is recorded (`RECORDED`, set by a resume) returns it without a call and
without an event; any other runs with its retries, and its `step_finished` reaches this
recorder, which stores it with JetStream's ack, only while this instance still holds the
run's lease (compare-and-set), before the engine may use the output. So two instances never
both record, and no output is used that the journal could lose.

Each step's calls carry `X-Mesh-Idempotency-Key: <run>/<step path>` (set by the recorder's
`step_started` on the step's own task). Waits and sleeps record their deadline first (`step_waiting`), so
a resumed run waits only for what is left; parking raises `Parked`, a BaseException.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from runtime.core.protocol import TIMEOUT, MeshError
from runtime.pipeline.nodes import StepFailure
from runtime.pipeline.steps import seconds_text
from runtime.runs import events as ev
from runtime.runs.durable.journal_io import NO_SIGNAL, JournalGone, last_signal
from runtime.runs.durable.leases import Lease, LeaseLost, Leases
from runtime.runs.journal import Journal
from runtime.runs.recorder import RunRecorder
from runtime.runs.stepstats import StepStats

PARK_AFTER = 2.0  # a sleep with less than this left waits in memory; longer ones park
_RELEASING: set[asyncio.Task[None]] = set()  # lease removals under way (kept from the GC)


class Parked(BaseException):
    """The run is parked (a wait or a sleep): its task ends, its lease says when it wakes."""


class DurableRun(RunRecorder):
    """A RunObserver that stores what a resume needs with ack, under the run's lease."""

    __slots__ = (
        "_lock",
        "_step",
        "js",
        "lease",
        "leases",
        "lost",
        "pending",
        "recorded",
        "started",
        "stopping",
        "waits",
    )

    def __init__(self, nc: Any, journal: Journal | None, stats: StepStats, run_id: str,
                 pipeline: str, trace_id: str | None, info: dict[str, Any], lease: Lease,
                 leases: Leases, recorded: dict[str, Any] | None = None,
                 waits: dict[str, float | None] | None = None, started: bool = False):
        super().__init__(journal, stats, run_id, pipeline, trace_id, info)
        self.js = nc.jetstream(timeout=5)
        self.lease = lease
        self.leases = leases
        self.recorded = recorded if recorded is not None else {}  # step path -> output
        self.waits = waits if waits is not None else {}  # step path -> deadline (or None)
        self.started = started  # run_started is stored already (a resume, or the start)
        self.stopping = False  # the process is shutting down: a cancel is not the run's end
        self._lock = asyncio.Lock()  # one lease change at a time (parallel steps end together)
        self._step: dict[int, str] = {}  # task id -> the step path it runs (waits need it)
        self.lost = False  # the lease watch saw another instance take the run
        self.pending: list[asyncio.Task[Any]] = []  # step records whose ack is still to come

    async def hold(self) -> None:
        """Renew the lease by compare-and-set; LeaseLost when another instance took the run."""
        async with self._lock:
            self.lease = await self.leases.swap(self.lease, self.lease)

    def check(self) -> None:
        """LeaseLost once the lease watch has seen another instance take the run."""
        if self.lost:
            raise LeaseLost(self.run_id)

    async def store(self, event: str, step: str | None = None, attempt: int | None = None,
                    values: dict[str, Any] | None = None) -> None:
        """Publish one event and wait for JetStream's ack; JournalGone if it is not stored."""
        data = ev.encode(self._head, event, time.time(), step, attempt, values)
        try:
            await self.js.publish(ev.subject(self.run_id, event), data, stream=ev.STREAM)
        except Exception as exc:
            raise JournalGone(self.run_id, str(exc) or type(exc).__name__) from None

    def publish(self, event: str, step: str | None, attempt: int | None,
                values: dict[str, Any]) -> None:
        """Publish one event now; its ack is awaited by the next `flush`."""
        data = ev.encode(self._head, event, time.time(), step, attempt, values)
        self.pending.append(asyncio.get_running_loop().create_task(
            self.js.publish(ev.subject(self.run_id, event), data, stream=ev.STREAM)))

    async def flush(self) -> None:
        """Wait until every record published so far is stored; JournalGone if one is not."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise JournalGone(self.run_id, str(outcome) or type(outcome).__name__)

    # -- the observer ------------------------------------------------------------------------

    async def run_started(self, payload: Any) -> None:
        if not self.started:
            await self.store(ev.RUN_STARTED, values={"input": payload, **self.info})

    async def step_started(self, path: str, attempt: int) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._step[id(task)] = path
        self.check()
        await self.flush()  # no step acts on earlier results before they are stored
        await super().step_started(path, attempt)

    async def step_finished(self, path: str, attempt: int, output: Any) -> None:
        self._measure(path, attempt, "ok")
        # Stored before anything acts on it: the next step's start (and the run's end, and a
        # wait) waits for the ack first; meanwhile the engine only works out what comes next.
        # Only while the lease is ours: every `up` watches the leases, so this process learns
        # within a round trip that another took the run (a claim is a compare-and-set). If
        # that happens during the step, its record may land too: the step's output from a
        # real call with the same idempotency key, under an older lease, never used (a
        # resume takes the newest lease's record).
        self.check()
        self.publish(ev.STEP_FINISHED, path, attempt,
                     {"output": output, "lease": self.lease.revision})
        self.recorded[path] = output

    async def run_finished(self, output: Any) -> None:
        self.status = "ok"
        await self._end(ev.RUN_FINISHED, {"output": output})

    async def run_failed(self, error: MeshError) -> None:
        self.status = "failed"
        if isinstance(error, JournalGone):  # nothing more can be recorded
            await self.leases.release(self.lease)
            return
        await self._end(ev.RUN_FAILED, {"error": ev.error_value(error.code, error.message)})

    async def run_cancelled(self) -> None:
        if self.stopping:  # not the run's end: another `up` takes it over
            return
        self.status = "cancelled"
        await self._end(ev.RUN_CANCELLED, None)

    async def _end(self, event: str, values: dict[str, Any] | None) -> None:
        # Only the owner ends a run (the lease watch would have said otherwise); the end is
        # published after the steps' records, which JetStream stores in order.
        self.check()
        await asyncio.gather(self.flush(), self.store(event, values=values))
        # The lease says "ended" (compare-and-set) after the caller has its answer: a run
        # whose end is stored is never resumed, whoever finds its lease.
        task = asyncio.get_running_loop().create_task(self.leases.end(self.lease))
        _RELEASING.add(task)
        task.add_done_callback(_RELEASING.discard)

    # -- wait and sleep steps (runtime.pipeline.wait_steps.Waits) ----------------------------

    def _path(self, default: str) -> str:
        task = asyncio.current_task()
        return self._step.get(id(task), default) if task is not None else default

    async def signal(self, name: str, timeout: float | None) -> Any:
        path = self._path(name)
        found = await last_signal(self.js, self.run_id, name)
        if found is not NO_SIGNAL:
            return found
        until = await self._deadline(path, "wait", timeout, name)
        if until is not None and time.time() >= until:
            raise StepFailure(TIMEOUT, f"signal '{name}' did not arrive within "
                              f"{seconds_text(timeout or 0)}")
        async with self._lock:
            self.lease = await self.leases.park(self.lease, until, name)
        # A signal stored after the first look but before the lease said "parked" was taken
        # by nobody: look once more, and if it is there, take the run back.
        found = await last_signal(self.js, self.run_id, name)
        if found is not NO_SIGNAL:
            async with self._lock:
                claimed = await self.leases.claim(self.lease, self.lease.instance)
            if claimed is None:
                raise LeaseLost(self.run_id)  # whoever woke it runs it now
            self.lease = claimed
            return found
        raise Parked(self.run_id)

    async def sleep(self, seconds: float) -> None:
        path = self._path("sleep")
        until = await self._deadline(path, "sleep", seconds, None)
        assert until is not None
        left = until - time.time()
        if left <= 0:
            return
        if left < PARK_AFTER:
            await asyncio.sleep(left)
            return
        async with self._lock:
            self.lease = await self.leases.park(self.lease, until, None)
        raise Parked(self.run_id)

    async def _deadline(self, path: str, kind: str, seconds: float | None,
                        signal: str | None) -> float | None:
        """When the wait at `path` ends: recorded (with ack) the first time it starts, so a
        resumed run waits only for what is left."""
        if path in self.waits:
            return self.waits[path]
        until = None if seconds is None else round(time.time() + seconds, 3)
        await self.flush()
        await self.hold()
        await self.store(ev.STEP_WAITING, path, None,
                         {"kind": kind, "signal": signal, "until": until})
        self.waits[path] = until
        return until

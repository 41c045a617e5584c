"""A durable run from start to end, here or after a resume: lease, definition, journal,
the engine with every step memoized, and the answer to a caller that may still wait."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from runtime.core import protocol as p
from runtime.core.bus import Bus
from runtime.load.mesh import PipelineDef
from runtime.pipeline.observer import RECORDED
from runtime.pipeline.wait_steps import WAITS
from runtime.runs.durable.journal_io import JournalGone, run_events
from runtime.runs.durable.leases import Lease, LeaseLost
from runtime.runs.durable.run import DurableRun, Parked

log = logging.getLogger("mesh-runtime")
TERMINAL = ("run_finished", "run_failed", "run_cancelled")


class Detached(BaseException):
    """The run goes on without this request's task (parked, or taken over): whoever ends it
    answers the caller, if it still waits."""


@dataclass
class Recorded:
    """What the journal holds of one run."""

    pipeline: str = ""
    input: Any = None
    definition: str = ""
    trace_id: str | None = None
    reply: str = ""
    reply_until: float = 0.0
    outputs: dict[str, Any] | None = None
    waits: dict[str, float | None] | None = None
    ended: dict[str, Any] | None = None  # the terminal event, if any


def read_record(events: list[dict[str, Any]], lease: int | None = None) -> Recorded:
    """The run's start, finished steps (each step's record written under the newest lease),
    waits and end. With `lease` (the revision just claimed), a record that says it was
    written under a later lease is another client's forgery, and ignored."""
    found = Recorded(outputs={}, waits={})
    assert found.outputs is not None and found.waits is not None
    leases: dict[str, int] = {}  # step -> the lease revision of the record taken
    for event in events:
        kind, step = event.get("event"), event.get("step")
        if found.pipeline and event.get("pipeline") != found.pipeline:
            continue  # a pipeline a step called with the run's id writes under it too
        if kind == "run_started" and not found.definition:
            found.pipeline = str(event.get("pipeline") or "")
            found.input = event.get("input")
            found.definition = str(event.get("definition") or "")
            found.trace_id = event.get("trace_id")
            found.reply = str(event.get("reply") or "")
            until = event.get("reply_until")
            found.reply_until = float(until) if isinstance(until, int | float) else 0.0
        elif kind == "step_finished" and isinstance(step, str):
            written = event.get("lease")
            written = written if isinstance(written, int) and not isinstance(written, bool) else 0
            if lease is not None and written > lease:
                continue
            if written >= leases.get(step, -1):  # the newest owner's record (a superseded
                leases[step] = written           # owner's last one may follow it)
                found.outputs[step] = event.get("output")
        elif kind == "step_waiting" and isinstance(step, str):
            until = event.get("until")
            found.waits.setdefault(step, float(until) if isinstance(until, int | float)
                                   else None)
        elif kind in TERMINAL:
            found.ended = event
        elif kind == "run_resumed":  # `runs resume`: what ended it failed, not the run
            found.ended = None
    return found


class Lifecycle:
    """Runs durable runs of one process to their end (or to their next park)."""

    def __init__(self, nc: Any, bus: Bus, mesh_name: str):
        self.nc = nc
        self.bus = bus
        self.mesh_name = mesh_name
        self.running: dict[str, tuple[asyncio.Task[Any], DurableRun]] = {}

    def launch(self, drun: DurableRun, definition: PipelineDef, payload: Any) -> asyncio.Task[Any]:
        """The run's own task: a caller's deadline cancels the caller's wait, never the run."""
        task = asyncio.get_running_loop().create_task(self._execute(drun, definition, payload))
        self.running[drun.run_id] = (task, drun)

        def ended(_: asyncio.Task[Any]) -> None:
            if self.running.get(drun.run_id, (None,))[0] is task:  # not a newer claim's
                del self.running[drun.run_id]

        task.add_done_callback(ended)
        return task

    async def _execute(self, drun: DurableRun, definition: PipelineDef, payload: Any) -> Any:
        WAITS.set(drun)  # the task's own context: seen by every step, branch and item
        RECORDED.set(drun.recorded)
        try:
            return await definition.compiled.run(
                payload, call=self.bus, bus=self.bus, request_id=drun.run_id,
                mesh_name=self.mesh_name, default_timeout=definition.step_timeout,
                observer=drun)
        except JournalGone as exc:  # nothing can be recorded: no other `up` could resume it
            log.error("%s", exc.message)
            await drun.leases.release(drun.lease)
            raise

    async def resume(self, lease: Lease, load: Callable[[str], Awaitable[PipelineDef]],
                     make: Callable[..., DurableRun]) -> None:
        """Finish a run whose owner died, or that woke from parking; answers its caller."""
        run = lease.run
        try:
            record = read_record(await run_events(self.nc, run), lease.revision)
            if record.ended is not None:  # it ended, but its lease was not removed
                await make(lease, record).leases.end(lease)
                return
            if not record.definition:
                raise p.MeshError(p.HANDLER_ERROR, f"run {run} has no run_started event in "
                                  "the journal: it cannot be resumed")
            definition = await load(record.definition)
        except Exception as exc:
            await self._give_up(make(lease, record if "record" in locals() else Recorded()),
                                exc)
            return
        drun = make(lease, record)
        log.info("resuming durable run %s of %s (%d step%s recorded)", run, record.pipeline,
                 len(drun.recorded), "" if len(drun.recorded) == 1 else "s")
        await self.answer(run, record, self.launch(drun, definition, record.input))

    async def answer(self, run: str, record: Recorded, outcome: Awaitable[Any]) -> None:
        """Await the run; then answer its caller on the reply subject, if it still waits."""
        try:
            result = await outcome
            body, status = orjson.dumps(result), "ok"
        except (Parked, LeaseLost):
            return
        except p.MeshError as exc:
            body, status = exc.to_json(), "error"
        except asyncio.CancelledError:
            return
        except Exception as exc:
            body, status = p.MeshError(p.HANDLER_ERROR, f"{type(exc).__name__}: {exc}",
                                       request_id=run).to_json(), "error"
        if record.reply and time.time() < record.reply_until:
            headers = {p.HDR_STATUS: status, p.HDR_REQUEST_ID: run,
                       p.HDR_SOURCE: record.pipeline}
            try:
                await self.nc.publish(record.reply, body, headers=headers)
            except Exception as exc:
                log.debug("could not answer the caller of a resumed run: %s", exc)

    async def _give_up(self, drun: DurableRun, exc: BaseException) -> None:
        message = exc.message if isinstance(exc, p.MeshError) else f"{type(exc).__name__}: {exc}"
        log.error("durable run %s cannot be resumed: %s", drun.run_id, message)
        try:
            await drun.run_failed(p.MeshError(p.HANDLER_ERROR, f"cannot resume: {message}"))
        except BaseException as again:  # the journal itself is gone: nothing more to record
            log.debug("could not record the failure of run %s: %s", drun.run_id, again)
            await drun.leases.release(drun.lease)


async def outcome_of(nc: Any, run: str, caller_left: float) -> Any:
    """What a second start with the same run key gets: the first run's result, or its
    error; while it runs, its end (within this caller's budget)."""
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_event(msg: Any) -> None:
        if msg.subject.rsplit(".", 1)[-1] in TERMINAL and not ended.done():
            ended.set_result(None)

    sub = await nc.subscribe(f"mesh.run.{run}.*", cb=on_event)
    try:
        record = read_record(await run_events(nc, run))
        if record.ended is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended, timeout=max(caller_left - 0.05, 0.001))
            record = read_record(await run_events(nc, run))
    finally:
        await sub.unsubscribe()
    if record.ended is None:
        raise p.MeshError(p.TIMEOUT, f"the run with this run key ({run}) is still running",
                          request_id=run, details={"run": run, "status": "running"})
    if record.ended.get("event") == "run_finished":
        return record.ended.get("output")
    error = record.ended.get("error")
    error = error if isinstance(error, dict) else {}
    raise p.MeshError(str(error.get("code") or p.HANDLER_ERROR),
                      str(error.get("message") or "the first run failed"),
                      request_id=run, details={"run": run})

"""Durable runs in one `up` process: what the request path calls to start one, and what
keeps every durable run of the mesh going (recovery, wake-ups, signals)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson

from runtime.core import protocol as p
from runtime.core.bus import Bus
from runtime.core.text import is_request_id
from runtime.load.mesh import PipelineDef
from runtime.pipeline.expressions import EvaluationError, Template, compile_template
from runtime.runs import events as ev
from runtime.runs.durable.control import RESUME_PREFIX
from runtime.runs.durable.definitions import Definitions
from runtime.runs.durable.journal_io import run_events
from runtime.runs.durable.leases import ENDED, PARKED, Lease, LeaseLost, Leases
from runtime.runs.durable.lifecycle import Detached, Lifecycle, Recorded, outcome_of, read_record
from runtime.runs.durable.recovery import Recovery
from runtime.runs.durable.run import DurableRun, Parked
from runtime.runs.durable.runkeys import RunKeys, run_key_problem
from runtime.runs.durable.signals import Signals
from runtime.runs.journal import Journal, ensure_stream
from runtime.runs.stepstats import StepStats

log = logging.getLogger("mesh-runtime")


class DurableRuns:
    """Starts durable runs for the request path and resumes those that need an owner."""

    def __init__(self, nc: Any, bus: Bus, instance: str, mesh_name: str, interval: float,
                 journal: Journal | None, stats: StepStats):
        self.nc = nc
        self.bus = bus
        self.instance = instance
        self.mesh_name = mesh_name
        self.interval = interval
        self.journal = journal
        self.stats = stats
        self.pipelines: Mapping[str, PipelineDef] = {}
        self._keys: dict[str, Template] = {}  # run_key text -> compiled (checked at load)
        self._opened = False

    async def open(self, keep: float = 7 * 86400.0, max_bytes: int = 1024**3) -> None:
        await ensure_stream(self.nc, keep, max_bytes)  # durable runs are recorded, always
        self.leases = await Leases.open(self.nc, keep)
        self.definitions = await Definitions.open(self.nc, keep)
        self.run_keys = await RunKeys.open(self.nc, keep)
        self.lifecycle = Lifecycle(self.nc, self.bus, self.mesh_name)
        self.recovery = Recovery(self.nc, self.leases, self.instance, self.interval,
                                 self._serves, self._resume,
                                 lambda run: run in self.lifecycle.running, self._changed)
        self.signals = Signals(self.nc, self.recovery.wake, self.interval)
        await self.recovery.start()
        await self.signals.start()
        self._resumes = await self.nc.subscribe(RESUME_PREFIX + "*", cb=self._on_resume)
        self._opened = True

    async def close(self) -> None:
        """Stop: runs in flight here are left to another `up` (their leases say who had them,
        and this instance stops beating), never recorded as ended."""
        if not self._opened:
            return
        with contextlib.suppress(Exception):
            await self._resumes.unsubscribe()
        await self.signals.close()
        await self.recovery.close()
        for task, drun in list(self.lifecycle.running.values()):
            drun.stopping = True
            task.cancel()
        await asyncio.gather(*(t for t, _ in self.lifecycle.running.values()),
                             return_exceptions=True)

    def cancel(self, run: str) -> bool:
        """`runs cancel`: end a durable run running here, or a parked one this process
        serves (recorded as cancelled; of several processes, the lease's CAS picks one)."""
        if not self._opened:
            return False
        found = self.lifecycle.running.get(run)
        if found is not None:
            found[0].cancel()
            return True
        lease = self.recovery.book.leases.get(run)
        if lease is None or lease.state != PARKED or not self._serves(lease.pipeline):
            return False
        task = asyncio.get_running_loop().create_task(self._cancel_parked(lease))
        task.add_done_callback(_retrieve)
        return True

    async def _cancel_parked(self, lease: Lease) -> None:
        claimed = await self.leases.claim(lease, self.instance)
        if claimed is None:
            return  # woken or cancelled by another process meanwhile
        record = read_record(await run_events(self.nc, lease.run))
        await self._make(claimed, record).run_cancelled()
        log.info("parked durable run %s cancelled", lease.run)

    def serve(self, pipelines: Mapping[str, PipelineDef]) -> None:
        """The durable pipelines this process serves now (after each apply)."""
        self.pipelines = {n: d for n, d in pipelines.items() if d.durable}

    def _changed(self, lease: Lease | None, run: str) -> None:
        """A lease changed: a run of ours that another instance now owns stops at its next
        step (LeaseLost); our own changes name us, and a deleted lease ends nothing."""
        if lease is None or lease.instance == self.instance:
            return
        found = self.lifecycle.running.get(run)
        if found is not None:
            found[1].lost = True

    def _serves(self, name: str) -> bool:
        return name in self.pipelines

    def _make(self, lease: Lease, record: Recorded) -> DurableRun:
        info = {"definition": record.definition, "instance": self.instance}
        return DurableRun(self.nc, self.journal, self.stats, lease.run,
                          record.pipeline or lease.pipeline, record.trace_id, info, lease,
                          self.leases, record.outputs, record.waits, started=True)

    async def _resume(self, lease: Lease) -> None:
        old = self.lifecycle.running.get(lease.run)
        if old is not None:  # this process ran it too (a forged lease named a dead owner)
            old[1].lost = True
        await self.lifecycle.resume(lease, self.definitions.load, self._make)

    async def _on_resume(self, msg: Any) -> None:
        """`runs resume RUN`: run a failed or cancelled run again from its first unfinished
        step, if its pipeline is served here and this process wins its lease."""
        run = msg.subject[len(RESUME_PREFIX):]
        if not is_request_id(run) or not msg.reply or msg.reply[:1] == "$":
            return
        try:
            events = await run_events(self.nc, run)
            record = read_record(events)
            if (record.ended is None or record.ended.get("event") == "run_finished"
                    or not self._serves(record.pipeline)):
                return
            seen = await self.leases.get(run)
            lease = (await self.leases.create(run, self.instance, record.pipeline)
                     if seen is None else await self.leases.reopen(seen, self.instance)
                     if seen.state == ENDED else None)
            if lease is None:
                return  # another `up` took it, or it runs
            record = read_record(events, lease.revision)
            drun = self._make(lease, record)
            await drun.store(ev.RUN_RESUMED, values={"instance": self.instance})
            definition = await self.definitions.load(record.definition)
        except Exception as exc:
            log.warning("run %s could not be resumed: %s", run, exc)
            return
        log.info("resuming durable run %s of %s on request (%d step%s recorded)", run,
                 record.pipeline, len(drun.recorded), "" if len(drun.recorded) == 1 else "s")
        await self.nc.publish(msg.reply, orjson.dumps(
            {"run": run, "resumed": True, "instance": self.instance}))
        record.reply = ""  # its first caller has had its answer
        task = asyncio.get_running_loop().create_task(
            self.lifecycle.answer(run, record, self.lifecycle.launch(drun, definition,
                                                                     record.input)))
        task.add_done_callback(_retrieve)

    async def start(self, definition: PipelineDef, payload: Any, run: str,
                    headers: Mapping[str, str] | None, reply: str, caller_left: float,
                    trace_id: str | None) -> Any:
        """Run `payload` durably and return its result; raises MeshError, or Detached when
        the run goes on without this request (parked, taken over)."""
        if not self._opened:
            raise p.MeshError(p.HANDLER_ERROR, "durable runs need JetStream (the run journal "
                              "and KV buckets): this `up` has none")
        headers = headers or {}
        key = headers.get(p.HDR_RUN_KEY) or self._run_key(definition, payload)
        called = headers.get(p.HDR_IDEMPOTENCY_KEY)
        if called and key is None:  # a step of another run: its retries are one run
            key = "step:" + called
            run = hashlib.sha256(called.encode()).hexdigest()[:32]
        if key is not None:
            if (problem := run_key_problem(key)) is not None:
                raise p.MeshError(p.INVALID_INPUT, f"{p.HDR_RUN_KEY}: {problem}")
            first = await self.run_keys.claim(definition.name, key, run)
            if first is not None and first != run:
                return await outcome_of(self.nc, first, caller_left)
        digest = await self.definitions.keep(definition)
        info = {"definition": digest, "instance": self.instance, "reply": reply,
                "reply_until": round(time.time() + caller_left, 3), "run_key": key}
        drun = DurableRun(self.nc, self.journal, self.stats, run, definition.name, trace_id,
                          info, Lease(run, self.instance, definition.name), self.leases)
        # The lease and run_started at once (one round trip): a run id that exists already
        # gets a stray run_started after its own, which every reader ignores.
        lease, _ = await asyncio.gather(self.leases.create(run, self.instance, definition.name),
                                        drun.store(ev.RUN_STARTED,
                                                   values={"input": payload, **info}))
        if lease is None:  # the id names a run already: the same request again (a retry, a
            holder = await self.leases.get(run)  # trigger's message delivered twice)
            if holder is None or holder.pipeline != definition.name:
                raise p.MeshError(p.INVALID_INPUT, f"run {run} exists already, of another "
                                  "pipeline: a request id names one durable run")
            return await outcome_of(self.nc, run, caller_left)
        drun.lease = lease
        drun.started = True  # the engine's run_started adds nothing more
        task = self.lifecycle.launch(drun, definition, payload)
        task.add_done_callback(_retrieve)
        try:
            return await asyncio.shield(task)
        except (Parked, LeaseLost):
            raise Detached(run) from None

    def _run_key(self, definition: PipelineDef, payload: Any) -> str | None:
        text = definition.spec.run_key
        if text is None:
            return None
        template = self._keys.get(text)
        if template is None:
            template, _ = compile_template(text, ("run_key",))  # checked at load
            self._keys[text] = template
        try:
            key = template.render({"input": payload, "steps": {}, "mesh": {}})
        except EvaluationError as exc:
            raise p.MeshError(p.INVALID_INPUT, f"run_key: {exc}") from None
        problem = run_key_problem(key)
        if problem is not None:
            raise p.MeshError(p.INVALID_INPUT, f"run_key {text!r}: {problem}")
        return str(key)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A run that outlived its caller's wait ended: nobody else looks at how."""
    if not task.cancelled():
        task.exception()

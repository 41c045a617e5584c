"""The runs of one `up` process: each pipeline request runs here, recorded and cancellable.

`Runs.run` is what the request path calls for a pipeline: it makes the run's recorder (the
engine's observer), keeps the run's task where `runs cancel` can find it, and turns that
cancellation into the caller's `cancelled` error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from runtime.core import protocol as p
from runtime.core.bus import Bus
from runtime.load.mesh import PipelineDef
from runtime.runs.durable.coordinator import DurableRuns
from runtime.runs.durable.definitions import definition_hash
from runtime.runs.events import trace_id_of
from runtime.runs.journal import Journal
from runtime.runs.recorder import RunRecorder
from runtime.runs.stepstats import StepStats

TRACEPARENT = "traceparent"


class Runs:
    """The journal (None: not recorded), step statistics and the runs in flight."""

    def __init__(self, journal: Journal | None, instance: str = "", record: bool = True):
        self.journal = journal
        self.instance = instance
        self.record = record  # the mesh's `runs: {record}`
        self.stats = StepStats()
        self.active: dict[str, list[asyncio.Task[Any]]] = {}
        self._cancelling: set[asyncio.Task[Any]] = set()
        self._hashes: dict[str, str] = {}  # fingerprint -> definition hash
        self.durable: DurableRuns | None = None  # set once a durable pipeline is served

    @property
    def dropped(self) -> int:
        return self.journal.dropped if self.journal is not None else 0

    def recorder(self, definition: PipelineDef, request_id: str,
                 headers: Mapping[str, str] | None) -> RunRecorder:
        """The observer of one run of `definition`."""
        journal = self.journal if self.record and definition.spec.record else None
        trace_id = trace_id_of(headers.get(TRACEPARENT)) if headers else None
        info = {"definition": self._hash(definition), "instance": self.instance}
        return RunRecorder(journal, self.stats, request_id, definition.name, trace_id, info)

    async def run(self, definition: PipelineDef, payload: Any, request_id: str,
                  headers: Mapping[str, str] | None, *, bus: Bus, mesh_name: str,
                  caller_left: float | None, reply: str = "") -> Any:
        """Run the pipeline as the current task; MeshError `cancelled` after `cancel`.
        A durable pipeline's run gets a task of its own (runtime.runs.durable)."""
        task = asyncio.current_task()
        assert task is not None
        tasks = self.active.setdefault(request_id, [])
        tasks.append(task)
        try:
            if definition.durable:
                return await self._durable(definition, payload, request_id, headers, reply,
                                           caller_left)
            return await definition.compiled.run(
                payload, call=bus, bus=bus, request_id=request_id, mesh_name=mesh_name,
                default_timeout=definition.step_timeout, caller_left=caller_left,
                observer=self.recorder(definition, request_id, headers))
        except asyncio.CancelledError:
            if task not in self._cancelling:
                raise  # a shutdown's or a deadline's: not ours to answer
            self._cancelling.discard(task)
            task.uncancel()
            raise p.MeshError(p.CANCELLED, f"run {request_id} was cancelled",
                              agent=definition.name, request_id=request_id) from None
        finally:
            self._cancelling.discard(task)
            tasks.remove(task)
            if not tasks:
                del self.active[request_id]

    async def _durable(self, definition: PipelineDef, payload: Any, request_id: str,
                       headers: Mapping[str, str] | None, reply: str,
                       caller_left: float | None) -> Any:
        if self.durable is None:
            raise p.MeshError(p.HANDLER_ERROR, f"'{definition.name}' is durable, and durable "
                              "runs need JetStream (the run journal): this `up` has none",
                              agent=definition.name, request_id=request_id)
        trace_id = trace_id_of(headers.get(TRACEPARENT)) if headers else None
        return await self.durable.start(definition, payload, request_id, headers, reply,
                                        definition.timeout if caller_left is None
                                        else caller_left, trace_id)

    def cancel(self, run_id: str) -> bool:
        """Cancel the run `run_id` if it runs here; whether it did."""
        durable = self.durable is not None and self.durable.cancel(run_id)
        tasks = self.active.get(run_id)
        if not tasks:
            return durable
        for task in tasks:
            if task not in self._cancelling:
                self._cancelling.add(task)
                task.cancel()
        return True

    def _hash(self, definition: PipelineDef) -> str:
        known = self._hashes.get(definition.fingerprint)
        if known is None:
            known = definition_hash(definition)  # a durable run's is its key in mesh-pipelines
            if len(self._hashes) > 1000:
                self._hashes.clear()
            self._hashes[definition.fingerprint] = known
        return known

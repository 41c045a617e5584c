"""One run seen through the pipeline engine's observer hook: its events into the journal,
each step's duration into the step histogram, and a debug line per step."""

from __future__ import annotations

import logging
import time
from typing import Any

from runtime.core.idempotency import IDEMPOTENCY_KEY, idempotency_key
from runtime.core.protocol import MeshError
from runtime.runs import events as ev
from runtime.runs.journal import Journal
from runtime.runs.stepstats import StepStats

log = logging.getLogger("mesh-runtime.runs")


class RunRecorder:
    """A RunObserver (runtime.pipeline.observer) for one run. `journal` None: not recorded,
    but still measured. Never raises into the run."""

    __slots__ = ("_debug", "_head", "_started", "info", "journal", "pipeline",
                 "run_id", "stats", "status")

    def __init__(self, journal: Journal | None, stats: StepStats, run_id: str, pipeline: str,
                 trace_id: str | None, info: dict[str, Any]):
        self.journal = journal
        self.stats = stats
        self.run_id = run_id
        self.pipeline = pipeline
        self.info = info  # what run_started says besides the input: definition, instance
        self._head = ev.run_fields(run_id, pipeline, trace_id)
        self._started: dict[tuple[str, int], float] = {}  # (step, attempt) -> perf_counter
        self._debug = log.isEnabledFor(logging.DEBUG)
        self.status = "running"

    def _emit(self, event: str, step: str | None = None, attempt: int | None = None,
              values: dict[str, Any] | None = None, last: bool = False) -> None:
        journal = self.journal
        if journal is None:
            return
        try:
            data = ev.encode(self._head, event, time.time(), step, attempt, values)
        except Exception as exc:  # a value nothing can encode: the run goes on
            journal.drop(1, exc)
            return
        journal.publish(self.run_id, event, data, last)

    async def run_started(self, payload: Any) -> None:
        self._emit(ev.RUN_STARTED, values={"input": payload, **self.info})

    async def step_started(self, path: str, attempt: int) -> None:
        # The step's calls carry X-Mesh-Idempotency-Key (the step's own task: not its siblings)
        IDEMPOTENCY_KEY.set(idempotency_key(self.run_id, path))
        self._started[path, attempt] = time.perf_counter()
        self._emit(ev.STEP_STARTED, path, attempt)

    async def step_finished(self, path: str, attempt: int, output: Any) -> None:
        self._measure(path, attempt, "ok")
        self._emit(ev.STEP_FINISHED, path, attempt, {"output": output})

    async def step_failed(self, path: str, attempt: int, error: MeshError) -> None:
        self._measure(path, attempt, error.code)
        self._emit(ev.STEP_FAILED, path, attempt,
                         {"error": ev.error_value(error.code, error.message)})

    async def step_skipped(self, path: str) -> None:
        if self._debug:
            log.debug("run %s %s: step %s skipped (when is false)", self.run_id, self.pipeline,
                      path)
        self._emit(ev.STEP_SKIPPED, path)

    async def run_finished(self, output: Any) -> None:
        self.status = "ok"
        self._emit(ev.RUN_FINISHED, values={"output": output}, last=True)

    async def run_failed(self, error: MeshError) -> None:
        self.status = "failed"
        self._emit(ev.RUN_FAILED, values={"error": ev.error_value(error.code,
                                                                        error.message)},
                         last=True)

    async def run_cancelled(self) -> None:
        self.status = "cancelled"
        self._emit(ev.RUN_CANCELLED, last=True)

    def _measure(self, path: str, attempt: int, code: str) -> None:
        started = self._started.pop((path, attempt), None)
        if started is None:
            return
        seconds = time.perf_counter() - started
        self.stats.observe(self.pipeline, path, code, seconds)
        if self._debug:
            log.debug("run %s %s: step %s attempt %d %s in %.1f ms", self.run_id, self.pipeline,
                      path, attempt, code, seconds * 1000)

"""`mesh_trigger_messages_total{name,trigger,outcome}`: what came of each trigger's messages
(`ok`, `dead` for a dead letter, else the error code), read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from runtime.triggers.manager import Triggers

OUTCOMES = ("ok", "invalid_input", "handler_error", "timeout", "overloaded", "not_found", "dead")


class TriggerCollector(Collector):
    """The trigger counters of one `up` process."""

    def __init__(self, triggers: Triggers):
        self.triggers = triggers

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("mesh_trigger_messages", "Messages that triggers took, by "
                                     "name, trigger and outcome",
                                     labels=["name", "trigger", "outcome"])
        for row in _rows(self.triggers):
            name, trigger = str(row.pop("target")), str(row.pop("trigger"))
            for outcome in sorted({*OUTCOMES, *row}):  # the usual series exist from the start
                family.add_metric([name, trigger, outcome], float(row.get(outcome, 0)))
        yield family


def _rows(triggers: Triggers) -> list[dict[str, Any]]:
    for _ in range(5):  # the event loop may change them while this thread reads
        try:
            return triggers.counts()
        except RuntimeError:
            continue
    return []

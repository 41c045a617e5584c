"""`triggers:` of an agent or pipeline, and the pipeline step `emit:`, as pydantic models
(structure only; subjects, cron lines and `with:` expressions are checked by
runtime.load.triggercheck)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runtime.core.fields import Duration

TRIGGER_KINDS = ("subject", "stream", "kv", "schedule", "event")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StreamSource(_Strict):
    """A durable JetStream consumer: at-least-once, acked on success, dead-lettered at last."""

    stream: str = Field(description="The stream (created with `subject` when missing).")
    subject: str = Field(description="The subjects of the stream this trigger takes (a filter).")
    max_deliver: int = Field(5, ge=1, description="Tries before the message goes to "
                             "mesh.dead.<name> with its error.")
    ack_wait: Duration = Field(30.0, description="How long JetStream waits for an ack before "
                               "it redelivers (kept alive while the request runs).")
    backoff: Duration = Field(1.0, description="The wait before the first retry; it doubles.")
    max_backoff: Duration = Field(60.0, description="The longest wait between two tries.")
    deliver: Literal["new", "all"] = Field(
        "new", description="Where a new consumer starts: messages from now on, or the whole "
        "stream. An existing consumer keeps its position.")


class KvSource(_Strict):
    """Every put on a key of a KV bucket (deletes are skipped)."""

    bucket: str = Field(description="The KV bucket, e.g. mesh-context.")
    key: str = Field(">", description="A key or key pattern: customers.*, orders.>")


class ScheduleSource(_Strict):
    """Fires once per tick across every `up` serving the target."""

    cron: str | None = Field(None, description='Five fields, UTC: "*/5 * * * *"')
    every: Duration | None = Field(None, description="A period: 30s, 5m (ticks on multiples "
                                   "of it since the epoch, so every process agrees).")

    @model_validator(mode="after")
    def _one(self) -> ScheduleSource:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule needs exactly one of 'cron' or 'every'")
        return self


class EventSource(_Strict):
    """Events another agent or pipeline emits (`ctx.emit`, an `emit:` step)."""

    from_: str = Field(alias="from", description="The agent or pipeline that emits them.")
    type: str | None = Field(None, description="Only events of this type (ce-type); all if unset.")


class Trigger(_Strict):
    """Where requests to this agent or pipeline come from: exactly one of `subject`,
    `stream`, `kv`, `schedule` or `event`, and an optional `with:`."""

    subject: str | None = Field(None, description="Core NATS subject (queue group "
                                "q.trigger.<name>: one instance per message).")
    stream: StreamSource | None = None
    kv: KvSource | None = None
    schedule: ScheduleSource | None = None
    event: EventSource | None = None
    with_: Any = Field(None, alias="with", description="The input, built from `message.data`, "
                       "`message.subject`, `message.headers` (and `message.key` for kv) with "
                       "${{ }} expressions; without it, the message's JSON body.")

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        if sum(getattr(self, kind) is not None for kind in TRIGGER_KINDS) != 1:
            raise ValueError("a trigger needs exactly one of 'subject', 'stream', 'kv', "
                             "'schedule' or 'event'")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in TRIGGER_KINDS if getattr(self, k) is not None)

    def describe(self) -> str:
        """A few words: `stream ORDERS orders.>`, `schedule cron */5 * * * *`."""
        if self.subject is not None:
            return f"subject {self.subject}"
        if self.stream is not None:
            return f"stream {self.stream.stream} {self.stream.subject}"
        if self.kv is not None:
            return f"kv {self.kv.bucket} {self.kv.key}"
        if self.schedule is not None:
            every = self.schedule.every
            return (f"schedule cron {self.schedule.cron}" if every is None
                    else f"schedule every {every:g}s")
        assert self.event is not None
        return f"event {self.event.from_}" + (f" {self.event.type}" if self.event.type else "")


class EmitSpec(_Strict):
    """Publishes a CloudEvent on mesh.agent.<pipeline>.events; the step's result is its data."""

    type: str = Field(description="The event's type (ce-type), like order.accepted.")
    data: Any = Field(None, description="Any JSON value; ${{ }} in strings is JMESPath over "
                      "the scope. Without it, the pipeline's input.")

"""The `pipelines:` section of mesh.yaml as pydantic models (structure only; meaning is checked
by `runtime.pipeline.engine.compile_pipeline`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runtime.core.fields import Duration
from runtime.core.triggerspec import EmitSpec, Trigger

# Plain identifiers, so an expression can write `steps.<id>` without quoting. Checked by
# compile_pipeline (with a friendlier message than pydantic's); here it only feeds the schema.
STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_ITEMS = 1000  # for_each's default bound: one request may not fan out without limit


class Retry(BaseModel):
    """How often a call step tries, and how long it waits between tries."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(
        default=1, ge=1, description="Every try counts: 3 = one call + two retries."
    )
    backoff: Duration = Field(default=0.1, description="The first wait; it doubles after each try.")
    max_backoff: Duration = Field(default=2.0, description="The longest wait between two tries.")


class OnError(BaseModel):
    """The value a step takes when it fails after its last try."""

    model_config = ConfigDict(extra="forbid")

    value: Any = Field(description="The fallback result (any JSON value, null included).")


class SetState(BaseModel):
    """Writes one key of the shared state (the `mesh-context` KV bucket)."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="The key; may be a ${{ }} expression.")
    value: Any = Field(description="Any JSON value; ${{ }} in strings is JMESPath over the scope.")


SIGNAL_PATTERN = r"^[A-Za-z0-9_-]+$"  # one NATS subject token: mesh.run.<id>.signal.<name>


class Wait(BaseModel):
    """Parks a durable run until a signal arrives (`mesh-runtime runs signal RUN NAME JSON`)."""

    model_config = ConfigDict(extra="forbid")

    signal: str = Field(
        json_schema_extra={"pattern": SIGNAL_PATTERN},
        description="The signal's name: letters, digits, _ and -.",
    )
    timeout: Duration | None = Field(
        default=None, description="How long to wait; then the step fails with `timeout`."
    )


# What a step does: exactly one of these keys.
STEP_KINDS = ("call", "capability", "broadcast", "parallel", "get_state", "set_state", "emit",
              "wait", "sleep")


class Step(BaseModel):
    """One step: a `call` of an agent or pipeline, a call by `capability`, a `broadcast`, a
    `parallel` set of branches, or a read (`get_state`) or write (`set_state`) of shared state."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str | None = Field(
        default=None,
        json_schema_extra={"pattern": STEP_ID_PATTERN},
        description="Names the result as steps.<id>; required on top-level steps.",
    )
    call: str | None = Field(default=None, description="The agent or pipeline to call.")
    capability: str | None = Field(
        default=None, description="Call one of the agents offering this capability."
    )
    broadcast: str | None = Field(
        default=None,
        description="Ask every agent offering this capability; the result is the list of "
        "answers {agent, instance, status, result | error}.",
    )
    within: Duration | None = Field(
        default=None, description="How long a broadcast gathers answers (default 1s)."
    )
    min_answers: int | None = Field(
        default=None, ge=0,
        description="A broadcast with fewer successful answers fails (default 1).",
    )
    max_answers: int | None = Field(
        default=None, ge=1,
        description="A broadcast keeps at most this many answers (default 1000), and at most "
        "16 MB of them; past either it stops, and a last entry says so.",
    )
    get_state: str | None = Field(
        default=None, description="Read this key of the shared state (null when missing)."
    )
    set_state: SetState | None = None
    emit: EmitSpec | None = None
    wait: Wait | None = Field(
        default=None, description="Durable pipelines: park until a signal; its JSON is the result."
    )
    sleep: Duration | None = Field(
        default=None, description="Durable pipelines: wait this long (the run parks meanwhile)."
    )
    with_: dict[str, Any] | None = Field(
        default=None,
        alias="with",
        description="The payload; ${{ expr }} in strings is JMESPath over the scope.",
    )
    parallel: dict[str, Step | list[Step]] | None = Field(
        default=None, description="Branches that run concurrently; a list runs in sequence."
    )
    when: str | None = Field(default=None, description="A bare JMESPath expression; false skips.")
    for_each: str | None = Field(
        default=None, description="A bare JMESPath expression giving a list to fan out over."
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, description="At most this many for_each items at once."
    )
    max_items: int | None = Field(
        default=None, ge=1,
        description=f"The most items for_each takes (default {MAX_ITEMS}); more is invalid_input.",
    )
    retry: Retry | None = None
    timeout: Duration | None = Field(
        default=None, description="How long one call may take (defaults.timeout if unset)."
    )
    on_error: OnError | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        if sum(getattr(self, kind) is not None for kind in STEP_KINDS) != 1:
            *rest, last = (f"'{kind}'" for kind in STEP_KINDS)
            raise ValueError(f"a step needs exactly one of {', '.join(rest)} or {last}")
        return self


class PipelineSpec(BaseModel):
    """A pipeline: steps that chain agents, served as an agent itself."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    version: str = "1.0.0"
    tags: list[str] = Field(default_factory=list)
    input: dict[str, Any] | None = Field(default=None, description="JSON Schema of the input.")
    output: dict[str, Any] | None = Field(default=None, description="JSON Schema of the result.")
    steps: list[Step] = Field(min_length=1)
    returns: Any = Field(
        default=None, description="Builds the result; without it, the last step's result."
    )
    timeout: Duration | None = Field(
        default=None, description="Bounds the whole run (defaults.timeout if unset)."
    )
    record: bool = Field(
        default=True, description="Record its runs in the run journal (MESH_RUNS)."
    )
    durable: bool | None = Field(
        default=None,
        description="Runs survive the death of the process running them (defaults.durable "
        "if unset).",
    )
    run_key: str | None = Field(
        default=None,
        description="A ${{ }} expression over the input; at most one run per key (durable "
        "pipelines).",
    )
    triggers: list[Trigger] = Field(
        default_factory=list, description="Messages that start a run: subject, stream, kv, "
        "schedule or event."
    )


StepPath = tuple[str | int, ...]


def walk_steps(steps: list[Step], path: StepPath = ("steps",)) -> Iterator[tuple[StepPath, Step]]:
    """Every step with its path, branches included, in document order."""
    for index, step in enumerate(steps):
        yield from _walk_step(step, (*path, index))


def _walk_step(step: Step, path: StepPath) -> Iterator[tuple[StepPath, Step]]:
    yield path, step
    for branch, body in (step.parallel or {}).items():
        if isinstance(body, list):
            yield from walk_steps(body, (*path, "parallel", branch))
        else:
            yield from _walk_step(body, (*path, "parallel", branch))

"""The shape of mesh.yaml, version 1, as pydantic models (the source of mesh.schema.json)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from runtime.core.fields import ByteSize, Duration
from runtime.core.names import check_name
from runtime.core.triggerspec import Trigger
from runtime.pipeline.spec import PipelineSpec
from runtime.tracing.settings import TracingSettings

QUEUE_HELP = ("requests that may wait for a slot past `concurrency`, per agent per process "
              "(default 4 x concurrency); beyond that the answer is `overloaded` at once")


Name = Annotated[str, AfterValidator(check_name)]
JsonSchema = dict[str, Any] | bool


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsSettings(Strict):
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


class EmbeddedSettings(Strict):
    port: int = Field(4222, ge=0, le=65535, description="0 picks a free port")
    store_dir: str | None = Field(None, description="JetStream store; default: a temp folder")


def _not_blank(value: str | None) -> str | None:
    # `url: ${MESH_NATS_URL}` with the variable set but empty must not mean "embedded".
    if value is not None and not value.strip():
        raise ValueError("is empty (a ${VAR} set to the empty string?); write `embedded` for "
                         "a server of `up`'s own, or a nats:// URL")
    return value


class NatsSettings(Strict):
    """Where the mesh's NATS is: `embedded` (a server `up` starts) or a URL or cluster."""

    url: Annotated[str | None, AfterValidator(_not_blank)] = Field(
        None, description="'embedded' or nats://host:4222")
    servers: list[str] | None = None
    token: str | None = None
    user: str | None = None
    password: str | None = None
    creds: str | None = None
    tls: TlsSettings | None = None
    embedded: EmbeddedSettings = EmbeddedSettings()


class Defaults(Strict):
    timeout: Duration = 30.0
    concurrency: int = Field(64, ge=1, description="in-flight requests per agent per process")
    queue: int | None = Field(None, ge=0, description=QUEUE_HELP)
    durable: bool = Field(False, description="pipelines' runs survive a crash (see each "
                          "pipeline's durable)")

    def queue_for(self, own: int | None = None, concurrency: int | None = None) -> int:
        """An agent's queue: its own, else the default, else 4 x its concurrency."""
        if own is not None:
            return own
        return self.queue if self.queue is not None else 4 * (concurrency or self.concurrency)


class HealthSettings(Strict):
    """How often this process tells the mesh it is alive (`mesh-instances`)."""

    interval: Duration = Field(
        5.0, le=60.0,  # what a record may claim: liveness.MAX_INTERVAL
        description="heartbeat period (at most 60s); an instance silent for 3 periods is dead")


class RunsSettings(Strict):
    """The run journal (JetStream stream MESH_RUNS): whether runs are recorded, how long kept."""

    record: bool = Field(True, description="false: no pipeline run of this mesh is recorded")
    keep: Duration = Field(7 * 86400.0, description="how long a run's events are kept (7d)")
    max_bytes: ByteSize = Field(1024**3, description="the journal's size; the oldest events "
                                "go first when it is full (1GB)")


SERVICE_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"

_SERVICE_NAME = re.compile(SERVICE_NAME_PATTERN)


def check_service_name(name: str) -> str:
    if not _SERVICE_NAME.fullmatch(name):  # match() would let a trailing newline through
        raise ValueError(f"invalid mesh name {name!r}: use letters, digits, '_' and '-' "
                         "(it is the NATS micro service name), like nlp-demo")
    return name


def endpoint_name_clashes(spec: MeshSpec) -> list[tuple[tuple[str, str], str]]:
    """(path of the later name, message) for each served name whose NATS micro endpoint
    name (dots become underscores) another served name already has."""
    seen: dict[str, str] = {}
    clashes = []
    for kind, names in (("agents", spec.agents), ("pipelines", spec.pipelines)):
        for name in names:
            key = name.replace(".", "_")
            if key in seen:
                clashes.append(((kind, name), f"'{seen[key]}' and '{name}' have the same NATS "
                                f"micro endpoint name '{key}' (dots become underscores): "
                                "rename one"))
            else:
                seen[key] = name
    return clashes


class AgentSpec(Strict):
    """An agent served by this process: a Python handler with input and output schemas."""

    description: str = ""
    handler: str = Field(description="module:attribute, imported with mesh.yaml's folder first")
    input: JsonSchema | None = None
    output: JsonSchema | None = None
    tags: list[str] = []
    capabilities: list[Name] = Field(
        [], description="what it offers: callable by capability, reached by broadcasts")
    version: str = "0.1.0"
    timeout: Duration | None = None
    concurrency: int | None = Field(None, ge=1)
    queue: int | None = Field(None, ge=0, description=QUEUE_HELP)
    config: dict[str, Any] = {}
    triggers: list[Trigger] = Field(
        [], description="Messages that become requests: subject, stream, kv, schedule or event.")


class ExternalAgent(Strict):
    """An agent served by another process, declared so pipelines can be checked whole."""

    description: str = ""
    input: JsonSchema | None = None
    output: JsonSchema | None = None
    streaming: bool = False
    capabilities: list[Name] = []


class MeshSpec(Strict):
    """mesh.yaml, version 1."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="mesh.yaml")

    version: Literal[1]
    name: Annotated[str, AfterValidator(check_service_name)] = Field(
        "mesh", json_schema_extra={"pattern": SERVICE_NAME_PATTERN},
        description="the mesh's name (its NATS micro service name): letters, digits, _ and -")
    nats: NatsSettings = NatsSettings()
    health: HealthSettings = HealthSettings()
    runs: RunsSettings = RunsSettings()
    tracing: TracingSettings | None = None
    defaults: Defaults = Defaults()
    agents: dict[Name, AgentSpec] = {}
    pipelines: dict[Name, PipelineSpec] = {}
    external: dict[Name, ExternalAgent] = {}


def mesh_json_schema() -> dict[str, Any]:
    """The JSON Schema of mesh.yaml, as `mesh-runtime schema` prints it."""
    schema = MeshSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://mesh-runtime.dev/schemas/mesh.schema.json"
    return schema

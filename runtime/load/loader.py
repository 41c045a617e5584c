"""mesh.yaml to a checked `Mesh`: parse with positions, check structure, resolve everything.

Every problem is collected (not just the first) and raised together as MeshFileError.
A reload runs exactly this path, so an edit is checked as strictly as a start.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runtime.core.issues import DocPath, Issue, MeshFileError
from runtime.load import capabilities, model
from runtime.load.explain import explain
from runtime.load.fitcheck import fit_issues
from runtime.load.handlers import Handler, HandlerShapeError, inspect_handler
from runtime.load.hints import handler_file_hint, module_hint
from runtime.load.importer import (
    ImportFromStringError,
    ModuleFailed,
    ModuleNotFound,
    also_named_by,
    import_from_string,
)
from runtime.load.mesh import AgentDef, ExternalDef, Mesh, PipelineDef, fingerprint
from runtime.load.model import AgentSpec, Defaults, ExternalAgent, MeshSpec
from runtime.load.schemas import (
    PayloadSchema,
    SchemaCache,
    SchemaResolver,
    compile_schema,
    refers_to_files,
    schema_document,
)
from runtime.load.sourcecache import SourceCache
from runtime.load.triggercheck import TriggerDef, check_triggers
from runtime.load.yamlsource import SourceDoc, load_source
from runtime.pipeline.engine import compile_pipeline, find_cycles
from runtime.pipeline.spec import PipelineSpec, walk_steps


@dataclass
class LoadCache:
    """What one load can hand the next (parsed pieces, compiled schemas, inspected
    handlers, built agents), so reloading a big file costs what changed, not its size."""

    source: SourceCache = field(default_factory=SourceCache)
    schemas: SchemaCache = field(default_factory=SchemaCache)
    handlers: dict[str, tuple[object, Handler]] = field(default_factory=dict)
    agents: dict[str, AgentDef] = field(default_factory=dict)
    loaded_at: float = 0.0  # when the last load began (time.time()): edits after it are new
    specs: dict[str, tuple[object, AgentSpec]] = field(default_factory=dict)  # by parsed value
    self_contained: set[str] = field(default_factory=set)  # agents whose schemas name no file


def load_mesh(path: Path, environ: dict[str, str] | None = None,
              cache: LoadCache | None = None) -> Mesh:
    """Load and check a mesh file whole; raises MeshFileError listing every problem.

    With a `cache` (one per served file), whatever did not change since the last load
    with it is re-used; the result is the same as without.
    """
    path = Path(path)
    display = _display_name(path)
    if cache is not None:
        cache.loaded_at = time.time()
    if cache is None:
        doc = load_source(path, display=display, environ=environ)
    else:
        doc = cache.source.load(path, display=display, environ=environ)
    if doc.issues and doc.data is None:
        raise MeshFileError(doc.issues)
    return _Loading(path, doc, cache).run()


def _display_name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class _Loading:
    """One load: the document, what has been found wrong so far, and what resolved."""

    def __init__(self, path: Path, doc: SourceDoc, cache: LoadCache | None = None):
        self.path = path
        self.folder = path.resolve().parent
        self.doc = doc
        self.cache = cache
        self.issues: list[Issue] = list(doc.issues)
        self.warnings: list[Issue] = []
        self.schemas = SchemaResolver(self.folder, cache=cache.schemas if cache else None)
        self.handler_files: set[Path] = set()
        self.module_files: dict[str, Path | None] = {}
        self.self_contained: set[str] = set()
        # A module that failed to import: one issue for it (its index) and the agents naming it.
        self.failed_modules: dict[str, tuple[int, str, list[str]]] = {}

    def run(self) -> Mesh:
        data = self.doc.data
        if not isinstance(data, dict):
            raise MeshFileError([*self.issues, self.doc.issue((), "a mesh file is a mapping "
                                 "with at least `version: 1` (see `mesh-runtime schema`)")])
        if str(self.folder) not in sys.path:
            sys.path.insert(0, str(self.folder))  # `handler: handlers:f` finds handlers.py here
        spec = self._structure(data)
        if spec is None:
            self._check_agents_alone(data)
            self.issues.extend(self.schemas.issues)
            raise MeshFileError(self.issues)
        self.issues += [self.doc.issue(at, message, key=True)
                        for at, message in model.endpoint_name_clashes(spec)]
        agents = {name: a for name, s in spec.agents.items()
                  if (a := self._agent(spec.defaults, name, s))}
        external = {name: self._external(name, s) for name, s in spec.external.items()}
        pipelines = self._pipelines(spec, agents, external)
        triggers = self._triggers(spec, agents, pipelines)
        self.issues.extend(self.schemas.issues)
        self.warnings.extend(self.schemas.warnings)
        if self.issues:
            raise MeshFileError(self.issues, self.warnings)
        if self.cache is not None:
            self.cache.agents, self.cache.self_contained = dict(agents), self.self_contained
        return Mesh(
            path=self.path,
            spec=spec,
            agents=agents,
            pipelines=pipelines,
            external=external,
            watched_files=frozenset({self.path.resolve(), *self.schemas.used_files}),
            handler_files=frozenset(self.handler_files),
            warnings=tuple(sorted(self.warnings)),
            triggers=tuple(triggers),
        )

    # -- structure -------------------------------------------------------------------

    def _structure(self, data: dict[str, Any]) -> MeshSpec | None:
        if self.cache is not None and (spec := self._structure_by_agent(data)) is not None:
            return spec
        try:
            return MeshSpec.model_validate(data)
        except ValidationError as exc:
            seen: set[tuple[DocPath, str]] = set()
            for error in exc.errors():
                path, on_key, message = explain(error, data)
                if (path, message) not in seen:
                    seen.add((path, message))
                    self.issues.append(self.doc.issue(path, message, key=on_key))
            return None

    def _structure_by_agent(self, data: dict[str, Any]) -> MeshSpec | None:
        """MeshSpec re-using each agent's spec while its parsed value is the very same
        object (an unchanged piece of the file); None sends any problem to the full check."""
        assert self.cache is not None
        raw_agents = data.get("agents")
        if not isinstance(raw_agents, dict) or not raw_agents:
            return None
        known, specs = self.cache.specs, {}
        try:
            rest = MeshSpec.model_validate({**data, "agents": {}})
            for name, raw in raw_agents.items():
                before = known.get(name)
                if before is not None and before[0] is raw:
                    specs[name] = before
                else:
                    specs[name] = (raw, AgentSpec.model_validate(raw))
                    model.check_name(name)
        except (ValidationError, ValueError):
            return None
        self.cache.specs = specs
        return rest.model_copy(update={"agents": {name: s for name, (_, s) in specs.items()}})

    def _check_agents_alone(self, data: dict[str, Any]) -> None:
        """With the file's structure broken, still check each agent that is whole itself."""
        agents = data.get("agents")
        if not isinstance(agents, dict):
            return
        for name, raw in agents.items():
            try:
                spec = AgentSpec.model_validate(raw)
                model.check_name(name)
            except (ValidationError, ValueError):
                continue  # already reported by the whole-file check
            self._agent(Defaults(), name, spec)

    # -- agents ----------------------------------------------------------------------

    def _agent(self, defaults: Defaults, name: str, spec: AgentSpec) -> AgentDef | None:
        where = ("agents", name)
        failed = self.failed_modules.get(spec.handler.partition(":")[0])
        if failed is not None:  # said once, at the first agent naming it
            index, message, names = failed
            names.append(name)
            self.issues[index] = replace(self.issues[index], message=also_named_by(message, names))
            return None
        try:
            handler = self._handler(spec.handler)
        except (ImportFromStringError, HandlerShapeError) as exc:
            hint = module_hint(exc.module, self.folder) if isinstance(exc, ModuleNotFound) else ""
            message = handler_file_hint(spec.handler) or f"{exc}{hint}"
            self.issues.append(self.doc.issue((*where, "handler"), message))
            if isinstance(exc, ModuleFailed):
                self.failed_modules[exc.module] = (len(self.issues) - 1, message, [name])
            return None
        self._note_handler_file(spec.handler)
        timeout = spec.timeout or defaults.timeout
        concurrency = spec.concurrency or defaults.concurrency
        limits = (timeout, concurrency, defaults.queue_for(spec.queue, concurrency))
        before = self.cache.agents.get(name) if self.cache is not None else None
        # `spec is`, not `==`: the very spec of an unchanged piece (and 1 == 1.0 == True)
        if (before is not None and before.spec is spec and before.handler is handler
                and (before.timeout, before.concurrency, before.queue) == limits
                and name in self.cache.self_contained):  # type: ignore[union-attr]
            self.self_contained.add(name)
            return before  # nothing it depends on changed: not even its schemas are redone
        if not refers_to_files(spec.input) and not refers_to_files(spec.output):
            self.self_contained.add(name)
        input_schema = self._schema(spec.input, (*where, "input"), handler.input_schema)
        output_schema = self._schema(spec.output, (*where, "output"), handler.output_schema)
        if (before is not None and before.spec is spec and before.handler is handler
                and before.input is input_schema and before.output is output_schema
                and (before.timeout, before.concurrency, before.queue) == limits):
            return before
        return AgentDef(
            name=name, description=spec.description, version=spec.version,
            tags=tuple(spec.tags), input=input_schema, output=output_schema,
            timeout=timeout, concurrency=concurrency, queue=limits[2], streaming=handler.streaming,
            capabilities=tuple(dict.fromkeys(spec.capabilities)),
            triggers=tuple(t.describe() for t in spec.triggers),
            fingerprint=fingerprint(spec.model_dump(), schema_document(input_schema),
                                    schema_document(output_schema), *limits),
            spec=spec, handler=handler,
        )

    def _note_handler_file(self, spec: str) -> None:
        module = spec.partition(":")[0]
        if module not in self.module_files:
            source = getattr(sys.modules.get(module), "__file__", None)
            self.module_files[module] = Path(source).resolve() if source else None
            if source:
                self.handler_files.add(Path(source).resolve())

    def _handler(self, spec: str) -> Handler:
        """Import and inspect a handler; inspected once per function while a cache lives."""
        func = import_from_string(spec)
        if self.cache is None:
            return inspect_handler(func, spec)
        known = self.cache.handlers.get(spec)
        if known is not None and known[0] is func:
            return known[1]
        handler = inspect_handler(func, spec)
        self.cache.handlers[spec] = (func, handler)
        return handler

    def _schema(self, raw: Any, where: DocPath,
                derived: dict[str, Any] | None = None) -> PayloadSchema | None:
        if raw is None:
            if derived is None:
                return None
            if self.cache is None:
                return compile_schema(derived)
            key = ("derived", repr(derived))
            return self.cache.schemas.get(key) or self.cache.schemas.put(
                key, compile_schema(derived))
        return self.schemas.resolve(raw, self.doc, where)

    def _external(self, name: str, spec: ExternalAgent) -> ExternalDef:
        where = ("external", name)
        return ExternalDef(name, spec, self._schema(spec.input, (*where, "input")),
                           self._schema(spec.output, (*where, "output")))

    def _triggers(self, spec: MeshSpec, agents: dict[str, AgentDef],
                  pipelines: dict[str, PipelineDef]) -> list[TriggerDef]:
        targets = {name: (("agents", name), s.triggers, a.timeout, a.concurrency)
                   for name, s in spec.agents.items() if s.triggers and (a := agents.get(name))}
        targets.update({name: (("pipelines", name), s.triggers, p.timeout, p.concurrency)
                        for name, s in spec.pipelines.items()
                        if s.triggers and (p := pipelines.get(name))})
        if not targets:
            return []
        known = set(spec.agents) | set(spec.pipelines) | set(spec.external)
        found, errors, warnings = check_triggers(targets, known)
        self.issues += [self.doc.issue(path, message) for path, message in errors]
        self.warnings += [self.doc.issue(path, message, severity="warning")
                          for path, message in warnings]
        return found

    # -- pipelines -------------------------------------------------------------------

    def _pipelines(self, mesh: MeshSpec, agents: dict[str, AgentDef],
                   external: dict[str, ExternalDef]) -> dict[str, PipelineDef]:
        callable_names = set(mesh.agents) | set(mesh.pipelines) | set(mesh.external)
        offered = capabilities.declared(agents, external)
        for path, message in capabilities.schema_warnings(offered):
            self.warnings.append(self.doc.issue(path, message, severity="warning"))
        counts = {capability: len(found) for capability, found in offered.items()}
        for name, path, message in find_cycles(dict(mesh.pipelines)):
            self.issues.append(self.doc.issue(("pipelines", name, *path), message))

        result, own = {}, {}
        for name, spec in mesh.pipelines.items():
            where = ("pipelines", name)
            durable = mesh.defaults.durable if spec.durable is None else spec.durable
            compiled, problems = compile_pipeline(name, spec, callable_names, counts,
                                                  durable=durable)
            for path, message in problems:
                self.issues.append(self.doc.issue((*where, *path), message))
            input_schema = self._schema(spec.input, (*where, "input"))
            output_schema = self._schema(spec.output, (*where, "output"))
            own[name] = (input_schema, output_schema)
            if compiled is None:
                continue
            timeout = spec.timeout or mesh.defaults.timeout
            result[name] = PipelineDef(
                name=name, description=spec.description, version=spec.version,
                tags=tuple(dict.fromkeys(["pipeline", *spec.tags])), input=input_schema,
                output=output_schema, timeout=timeout, concurrency=mesh.defaults.concurrency,
                queue=mesh.defaults.queue_for(), streaming=False, step_timeout=mesh.defaults.timeout,
                fingerprint=fingerprint(spec.model_dump(by_alias=True), schema_document(input_schema),
                                        schema_document(output_schema), timeout, mesh.defaults.timeout,
                                        mesh.defaults.concurrency, mesh.defaults.queue_for(), durable),
                spec=spec, compiled=compiled, durable=durable,
                triggers=tuple(t.describe() for t in spec.triggers),
                events=tuple(dict.fromkeys(s.emit.type for _, s in walk_steps(spec.steps)
                                           if s.emit is not None)),
            )
        errors, warnings = fit_issues(self.doc, dict(mesh.pipelines), agents, external, own)
        self.issues += errors
        self.warnings += warnings
        return result


__all__ = ["MeshFileError", "PipelineSpec", "load_mesh"]

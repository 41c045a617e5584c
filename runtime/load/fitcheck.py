"""Pipelines against the schemas of what they call: `with:` payloads and expression reads
(and, first, handlers against their agents' schemas: see runtime.load.handlerfit).

Run once every schema of the file is resolved, since a pipeline may call one defined
after it. Proven misfits are errors; possible ones are warnings (see runtime.pipeline.fit).
"""

from __future__ import annotations

from typing import Any

from runtime.core.issues import Issue
from runtime.load.handlerfit import handler_fit_issues
from runtime.load.mesh import AgentDef, ExternalDef
from runtime.load.schemas import PayloadSchema, schema_document
from runtime.load.yamlsource import SourceDoc
from runtime.pipeline.engine import check_constants
from runtime.pipeline.fit import check_fit
from runtime.pipeline.spec import PipelineSpec

Schemas = tuple[PayloadSchema | None, PayloadSchema | None]


def fit_issues(doc: SourceDoc, pipelines: dict[str, PipelineSpec], agents: dict[str, AgentDef],
               external: dict[str, ExternalDef],
               own: dict[str, Schemas]) -> tuple[list[Issue], list[Issue]]:
    """(errors, warnings) for every pipeline (and annotated handler) of the file."""
    def schemas_of(name: str) -> tuple[Any, Any] | None:
        found = agents.get(name) or external.get(name)
        if found is not None:
            return schema_document(found.input), schema_document(found.output)
        if name in own:
            return schema_document(own[name][0]), schema_document(own[name][1])
        return None

    def input_schema_of(name: str) -> dict[str, Any] | None:
        schemas = schemas_of(name)
        return schemas[0] if schemas is not None else None

    errors, warnings = handler_fit_issues(doc, agents)
    for name, spec in pipelines.items():
        where = ("pipelines", name)
        for path, message in check_constants(name, spec, input_schema_of):
            errors.append(doc.issue((*where, *path), message))  # a constant is proven either way
        try:
            proven, possible = check_fit(spec, schema_document(own.get(name, (None, None))[0]), schemas_of)
        except RecursionError:  # a schema deeper than any check should follow: claim nothing
            continue
        errors += [doc.issue((*where, *path), message) for path, message in proven]
        warnings += [doc.issue((*where, *path), message, severity="warning")
                     for path, message in possible]
    return errors, warnings

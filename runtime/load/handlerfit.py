"""A handler's annotations against the `input:` and `output:` schemas the file declares.

A handler annotated `-> Ticket` (a pydantic model, or `list[str]`, `int`, ...) returns
values whose JSON schema is known at load time: when the file also declares `output:`, a
result that can never match it is an error, one that might not a warning. Likewise a
parameter model whose required field `input:` can never provide. Shapes over-approximate
(see runtime.pipeline.shapes), so every error is proven; open schemas are never second-guessed.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from runtime.core.issues import Issue
from runtime.load.mesh import AgentDef
from runtime.load.yamlsource import SourceDoc
from runtime.pipeline.fit import _listed, _names, _same  # the words pipelines' checks use
from runtime.pipeline.shapes import Schema, Shape, of_schema

_DEPTH = 8  # nested objects followed; deeper ones are not checked
_NEVER = "no result can ever match it"


class _Dumped(GenerateJsonSchema):
    """The schema of what `model_dump(mode="json")` gives: every field is there (defaults
    too) and a model's undeclared keys are dropped unless it says `extra="allow"`."""

    def field_is_required(self, field: core_schema.ModelField | core_schema.DataclassField
                          | core_schema.TypedDictField, total: bool) -> bool:
        if field["type"] == "typed-dict-field":
            return super().field_is_required(field, total)
        return not field.get("serialization_exclude") and not field.get(
            "serialization_exclude_if")

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        cls = schema["cls"]
        decorators = getattr(cls, "__pydantic_decorators__", None)
        if getattr(cls, "model_config", {}).get("serialize_by_alias") or (decorators and (
                decorators.model_serializers or decorators.field_serializers)):
            return {}  # its own serializer (or aliases) decides what it dumps: claim nothing
        found = super().model_schema(schema)
        if "properties" in found and "additionalProperties" not in found:
            found["additionalProperties"] = False
        return found


@functools.lru_cache(maxsize=1024)
def result_schema(annotation: Any) -> dict[str, Any] | None:
    """The JSON schema of what a handler annotated `-> annotation` returns, if known."""
    if annotation is None or annotation is Any:
        return None
    try:
        return TypeAdapter(annotation).json_schema(by_alias=False, mode="serialization",
                                                   schema_generator=_Dumped)
    except Exception:  # not a type pydantic can describe: claim nothing
        return None


def handler_fit_issues(doc: SourceDoc,
                       agents: dict[str, AgentDef]) -> tuple[list[Issue], list[Issue]]:
    """(errors, warnings) for the agents whose file declares `input:` or `output:`."""
    errors: list[Issue] = []
    warnings: list[Issue] = []
    for name, agent in agents.items():
        handler, spec = agent.handler, agent.spec
        returns = _cached_schema(handler.returns)
        if spec.output is not None and returns is not None and agent.output is not None:
            found = _Compare(f"the handler returns {_named(handler.returns)}")
            found.result(of_schema(returns), of_schema(agent.output.document), ())
            where = ("agents", name, "output")
            errors += [doc.issue(where, m, key=True) for m in found.errors]
            warnings += [doc.issue(where, m, key=True, severity="warning")
                         for m in found.warnings]
        if spec.input is not None and handler.input_schema is not None and agent.input:
            where = ("agents", name, "input")
            errors += [doc.issue(where, m, key=True) for m in
                       _unprovided(handler.input_schema, agent.input.document, handler.takes)]
    return errors, warnings


def _cached_schema(annotation: Any) -> dict[str, Any] | None:
    try:
        return result_schema(annotation)
    except TypeError:  # an unhashable annotation
        return result_schema.__wrapped__(annotation)


class _Compare:
    def __init__(self, said: str):
        self.said = said
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def result(self, given: Shape, wanted: Shape, chain: tuple[str, ...],
               proven: bool = True) -> None:
        """Compare what the handler gives at `chain` with what `output` takes there."""
        if not self._types(given, wanted, chain, proven):
            return
        source, target = _one_object(given), _one_object(wanted)
        if source is None or target is None or len(chain) >= _DEPTH:
            return
        has = _properties(source)
        always = set(has).intersection(source.schema.get("required") or ())
        takes = _properties(target)
        required = target.schema.get("required")
        for key in required if isinstance(required, list) else ():
            if not isinstance(key, str) or key in always:
                continue
            field = _dotted(chain, key)
            if not given.field(key)[1]:
                self._note(proven, f"output requires '{field}', but {self.said}, which has no "
                                   f"field '{field}': {_NEVER}")
            elif key in has:
                self.warnings.append(f"output requires '{field}', but {self.said}, whose field "
                                     f"'{field}' may be left out")
        for key in has:
            if not wanted.field(key)[1]:
                self._note(proven and key in always,
                           f"output allows no field '{_dotted(chain, key)}' (additionalProperties: "
                           f"false), but {self.said}, which always has it: {_NEVER}")
            elif key in takes:
                self.result(of_schema(has[key], source.root), of_schema(takes[key], target.root),
                            (*chain, key), proven and key in always)

    def _types(self, given: Shape, wanted: Shape, chain: tuple[str, ...], proven: bool) -> bool:
        """False when the types (or the few possible values) cannot fit: nothing more to say."""
        gives, takes = given.types(), wanted.types()
        what = f"whose field '{'.'.join(chain)}' is" if chain else "which is"
        into = f" for '{'.'.join(chain)}'" if chain else ""
        if gives is not None and takes is not None:
            allowed = takes | {"integer"} if "number" in takes else takes
            # a float such as 2.0 is an integer in JSON Schema: it may fit
            loose = "integer" in takes and "number" in gives
            if not gives & allowed and not loose:
                self._note(proven, f"{self.said}, {what} {_names(gives)}, but output takes "
                                   f"{_names(takes)}{into}: {_NEVER}")
                return False
            if gives - allowed:
                self.warnings.append(f"{self.said}, {what} maybe {_names(gives - allowed)}, but "
                                     f"output takes {_names(takes)}{into}")
        values, choices = given.values(), wanted.values()
        if values is not None and choices is not None:
            refused = [v for v in values if not any(_same(v, a) for a in choices)]
            if refused and len(refused) == len(values):
                self._note(proven, f"{self.said}, {what} one of {_listed(values)}, but output "
                                   f"takes only {_listed(choices)}{into}: {_NEVER}")
                return False
            if refused:
                self.warnings.append(f"{self.said}, {what} maybe {_listed(refused)}, which "
                                     f"output does not take{into}")
        return True

    def _note(self, proven: bool, message: str) -> None:
        if proven:
            self.errors.append(message)
        else:  # the field may be absent, so the misfit may never show
            self.warnings.append(message.replace(f": {_NEVER}", ""))


def _unprovided(model: dict[str, Any], schema: Any, takes: Any) -> list[str]:
    """Why no request that passes `input:` can ever pass the handler's parameter model."""
    shape, named = of_schema(schema), _named(takes)
    kinds = shape.types()
    if kinds is not None and "object" not in kinds:
        return [f"input takes {_names(kinds)}, but the handler's parameter model {named} takes "
                f"an object: every request would fail the model"]
    return [f"the handler's parameter model {named} requires '{key}', but input allows no such "
            f"field (additionalProperties: false): every request would fail the model"
            for key in model.get("required") or () if not shape.field(key)[1]]


def _one_object(shape: Shape) -> Schema | None:
    """The one object schema a shape is, when it is exactly that."""
    found = shape.alternatives
    if found is None or len(found) != 1 or not isinstance(found[0], Schema):
        return None
    return found[0] if shape.types() == {"object"} else None


def _properties(alternative: Schema) -> dict[str, Any]:
    found = alternative.schema.get("properties")
    return found if isinstance(found, dict) else {}


def _named(annotation: Any) -> str:
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return re.sub(r"\b[\w.]+\.(\w+)", r"\1", str(annotation))  # typing.Optional[m.T]: Optional[T]


def _dotted(chain: tuple[str, ...], key: str) -> str:
    return ".".join((*chain, key))

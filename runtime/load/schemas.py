"""Payload schemas: resolve `$ref` files, check them against their meta-schema, compile once.

The request path only calls `PayloadSchema.validator.is_valid` (jsonschema-rs, compiled
at load time); the slower, precise error listing runs only for a request that fails.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema_rs

from runtime.core.issues import DocPath, Issue
from runtime.load.offline import refuse_retrieval, remote_problems
from runtime.load.schemadefaults import DefaultsFiller, compile_defaults
from runtime.load.schemalint import lint_schema
from runtime.load.yamlguard import read_source_text
from runtime.load.yamlsource import SourceDoc, load_source, parse_source

_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")


@dataclass(frozen=True)
class PayloadSchema:
    """A compiled payload schema: the self-contained document and its fast validator."""

    document: dict[str, Any]
    validator: Any  # a jsonschema_rs validator
    fill_defaults: DefaultsFiller | None = None

    def errors(self, instance: Any) -> list[dict[str, str]]:
        """Every violation as `{"path": JSON pointer, "message": text}` (the slow path)."""
        found = []
        for error in self.validator.iter_errors(instance):
            parts = [str(p) for p in error.instance_path]
            if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Required):
                parts.append(str(error.kind.property))  # point at the missing field itself
            pointer = "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)
            found.append({"path": pointer, "message": error.message})
        return found


def schema_document(schema: PayloadSchema | None) -> Any:
    """The JSON Schema document behind a compiled schema (None where there is none)."""
    return schema.document if schema is not None else None


def refers_to_files(schema: Any) -> bool:
    """Whether a schema has a `$ref` to a file (whose content may have changed since)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return True
        return any(refers_to_files(v) for v in schema.values())
    if isinstance(schema, list):
        return any(refers_to_files(v) for v in schema)
    return False


class SchemaCache:
    """What stays true across loads: meta-schema checks, compiled validators and parsed
    schema files, keyed by their exact text, so a reload re-does only what was edited."""

    def __init__(self, size: int = 8192):
        self.size = size
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: Hashable, value: Any) -> Any:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self.size:  # bounded: a long session of edits does not grow
            self._entries.popitem(last=False)
        return value


@dataclass
class SchemaResolver:
    """Resolves the schemas of one mesh file, caching each referenced file once."""

    base_dir: Path
    files: dict[Path, SourceDoc] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    cache: SchemaCache | None = None
    _bundled: dict[Path, Any] = field(default_factory=dict)

    def resolve(self, raw: Any, doc: SourceDoc, where: DocPath) -> PayloadSchema | None:
        """Resolve, check and compile the schema at `where` in `doc`; None if it is broken."""
        before = len(self.issues)
        if isinstance(raw, bool):
            raw = {} if raw else {"not": {}}
        if not isinstance(raw, dict):
            self.issues.append(doc.issue(where, "a schema must be a mapping (a JSON Schema object)"))
            return None
        bundled = self._bundle(raw, doc, where, Path(doc.file).parent, (), seen=())
        if len(self.issues) > before or bundled is None:
            return None
        key = ("compiled", _text(bundled)) if self.cache is not None else None
        if self.cache is not None and (known := self.cache.get(key)) is not None:
            return known
        try:
            validator = jsonschema_rs.validator_for(bundled, retriever=refuse_retrieval)
        except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
            first_line = str(exc).strip().splitlines()[0]
            self.issues.append(doc.issue(where, f"invalid JSON Schema: {first_line}"))
            return None
        compiled = PayloadSchema(bundled, validator, compile_defaults(bundled))
        return self.cache.put(key, compiled) if self.cache is not None else compiled

    def _bundle(self, node: Any, doc: SourceDoc, where: DocPath, folder: Path,
                inner: DocPath, seen: tuple[Path, ...]) -> Any:
        """Check `node` against its meta-schema, then inline the files its `$ref`s name."""
        if not inner:  # a document's root: refuse what would be fetched, then check it
            remote = list(remote_problems(node))
            for path, message in remote:
                self.issues.append(doc.issue((*where, *path), message))
            if remote:
                return None
            if self._check_meta(node, doc, where):
                self._lint(node, doc, where)
        if isinstance(node, list):
            return [self._bundle(v, doc, (*where, i), folder, (*inner, i), seen)
                    for i, v in enumerate(node)]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and _is_file_ref(ref):
            rest = {k: v for k, v in node.items() if k != "$ref"}
            included = self._include(ref, doc, (*where, "$ref"), folder, seen)
            if included is None:
                return None
            return {**included, **rest} if rest and "$ref" not in included else (
                {"allOf": [included], **rest} if rest else included)
        return {k: self._bundle(v, doc, (*where, k), folder, (*inner, k), seen)
                for k, v in node.items()}

    def _include(self, ref: str, doc: SourceDoc, where: DocPath, folder: Path,
                 seen: tuple[Path, ...]) -> dict[str, Any] | None:
        file_part, _, fragment = ref.partition("#")
        target = (folder / file_part).resolve()
        if target in seen:
            self.issues.append(doc.issue(where, f"$ref '{ref}' refers back to itself in a cycle"))
            return None
        if not target.is_file():
            self.issues.append(doc.issue(where, f"$ref file not found: {file_part} "
                                                f"(looked for {target})"))
            return None
        if target not in self._bundled:  # each file is read and checked once per load
            source = self._load_file(target)
            self.files[target] = source
            self.issues.extend(source.issues)
            before = len(self.issues)
            content = None if source.issues else self._bundle(
                source.data, source, (), target.parent, (), (*seen, target))
            if not isinstance(content, dict) and content is not None:
                self.issues.append(source.issue((), "a schema file must hold a JSON object"))
            self._bundled[target] = content if len(self.issues) == before else None
        content = self._bundled[target]
        if content is None:
            return None
        if not fragment and not _has_local_ref(content):
            return content
        # Keep the file as an embedded resource so its own `#/...` refs still resolve.
        uri = target.as_uri()
        key = f"file:{target.name}"
        return {"$ref": f"{uri}#{fragment}", "$defs": {key: {**content, "$id": uri}}}

    def _load_file(self, target: Path) -> SourceDoc:
        display = _display(target, self.base_dir)
        if self.cache is None:
            return load_source(target, display=display)
        try:
            text = read_source_text(target)
        except (OSError, ValueError):
            return load_source(target, display=display)  # reports the problem its usual way
        key = ("file", display, text)
        if (known := self.cache.get(key)) is not None:
            return known
        source = parse_source(text, SourceDoc(display))
        return self.cache.put(key, source) if not source.issues else source

    def _lint(self, schema: Any, doc: SourceDoc, where: DocPath) -> None:
        if self.cache is None:
            findings = lint_schema(schema)
        else:
            key = ("lint", _text(schema))
            findings = self.cache.get(key)
            if findings is None:
                findings = self.cache.put(key, lint_schema(schema))
        for found in findings:
            issue = doc.issue((*where, *found.path), found.message, key=found.on_key,
                              severity=found.severity)
            (self.warnings if found.severity == "warning" else self.issues).append(issue)

    def _check_meta(self, schema: Any, doc: SourceDoc, where: DocPath) -> bool:
        """Whether `schema` is a valid JSON Schema; reports where it is not."""
        if not isinstance(schema, dict):
            return False
        if self.cache is None:
            problems = _meta_problems(schema)
        else:
            key = ("meta", _text(schema))
            problems = self.cache.get(key)
            if problems is None:
                problems = self.cache.put(key, _meta_problems(schema))
        for path, message in problems:
            self.issues.append(doc.issue((*where, *path), f"invalid JSON Schema: {message}"))
        return not problems

    @property
    def used_files(self) -> list[Path]:
        return sorted(self.files)


def _meta_problems(schema: dict[str, Any]) -> tuple[tuple[DocPath, str], ...]:
    """Where `schema` breaks its meta-schema, as (path inside the schema, message) pairs."""
    try:  # the Rust check is ~100x faster; Python's only words the errors of a bad schema
        if jsonschema_rs.meta.is_valid(schema):
            return ()
    except (jsonschema_rs.ReferencingError, ValueError):
        pass  # an unknown $schema URI: the Python check below (or the compile step) says so
    import jsonschema  # only to word a bad schema's errors: most starts never import it

    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    except Exception:  # an unknown $schema URI: checked by the compile step instead
        return ()
    return tuple((tuple(error.path), _meta_message(error))
                 for error in cls(cls.META_SCHEMA).iter_errors(schema))


def _text(schema: Any) -> str:
    """A cache key for a schema: its exact JSON text (key order kept: it is shown to users)."""
    return json.dumps(schema, default=repr)


def _meta_message(error: Any) -> str:  # a jsonschema.ValidationError
    if error.path and error.path[-1] == "type" and isinstance(error.instance, str):
        return f"'{error.instance}' is not a JSON Schema type (use one of: {', '.join(_TYPES)})"
    return error.message


def _is_file_ref(ref: str) -> bool:
    return not ref.startswith("#") and "://" not in ref and not ref.startswith("urn:")


def _has_local_ref(node: Any) -> bool:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            return True
        return any(_has_local_ref(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_local_ref(v) for v in node)
    return False


def _display(target: Path, base_dir: Path) -> str:
    try:
        return str(target.relative_to(base_dir.resolve()))
    except ValueError:
        return str(target)


def compile_schema(document: dict[str, Any]) -> PayloadSchema:
    """Compile a schema that needs no file resolution (one derived from a pydantic model)."""
    validator = jsonschema_rs.validator_for(document, retriever=refuse_retrieval)
    return PayloadSchema(document, validator, compile_defaults(document))

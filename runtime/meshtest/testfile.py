"""`*.test.yaml` files: parsed with positions, checked whole, every problem at file:line:col."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from runtime.core.issues import Issue
from runtime.load.explain import explain
from runtime.load.yamlsource import SourceDoc, load_source
from runtime.pipeline.expressions import compile_expression

TEST_SUFFIX = ".test.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StubError(_Strict):
    code: str
    message: str = "stubbed error"
    details: dict[str, Any] = Field(default_factory=dict)


class Answer(_Strict):
    """One answer of a stub: an `output`, or an `error`."""

    output: Any = None
    error: StubError | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Answer:
        if ("output" in self.model_fields_set) == (self.error is not None):
            raise ValueError("a stub answer has either `output` or `error`")
        return self


class Stubbed(_Strict):
    """A stub: one answer for every call (`repeat`), or a list answered in order."""

    answers: list[Answer] = Field(min_length=1)
    repeat: bool = False


def _stubs(value: Any) -> Any:
    # `name: {output: ...}` answers every call; `name: [..., ...]` answers in order.
    if not isinstance(value, dict):
        return value
    return {name: {"answers": [v], "repeat": True} if isinstance(v, dict) else
            {"answers": v} if isinstance(v, list) else v for name, v in value.items()}


class ExpectedError(_Strict):
    code: str | None = None
    message: str | None = None


class Expect(_Strict):
    output: Any = None
    error: ExpectedError | None = None
    asserts: list[str] = Field(default_factory=list, alias="assert")

    @model_validator(mode="after")
    def _not_both(self) -> Expect:
        if "output" in self.model_fields_set and self.error is not None:
            raise ValueError("expect `output` or `error`, not both")
        return self


class Case(_Strict):
    name: str | None = None
    call: str
    input: Any = Field(default_factory=dict)
    stubs: Annotated[dict[str, Stubbed], BeforeValidator(_stubs)] = Field(default_factory=dict)
    expect: Expect = Field(default_factory=Expect)


class TestFileSpec(_Strict):
    mesh: str = "mesh.yaml"
    cases: list[Case] = Field(min_length=1)


_VOCABULARY = sorted({info.alias or name for cls in (StubError, Answer, ExpectedError, Expect,
                                                       Case, TestFileSpec)
                      for name, info in cls.model_fields.items()})


@dataclass
class TestFile:
    """A checked test file: its cases, the mesh it runs against, and where each case is."""

    path: Path
    display: str
    mesh: Path
    cases: list[Case]
    doc: SourceDoc

    def case_name(self, index: int) -> str:
        return self.cases[index].name or f"case {index + 1} ({self.cases[index].call})"


class TestFileError(ValueError):
    def __init__(self, issues: list[Issue]):
        self.issues = sorted(issues)
        super().__init__("\n".join(map(str, self.issues)))


_SKIPPED = {"node_modules", "__pycache__", "site-packages"}


def find_test_files(paths: list[Path]) -> list[Path]:
    """Every `*.test.yaml` named, or under a named folder and its subfolders, sorted.

    Hidden folders (`.venv`, `.git`) and package caches are not searched, nor even walked."""
    found: set[Path] = set()
    for path in paths:
        if not path.is_dir():
            if path.exists():
                found.add(path)
            continue
        for folder, subfolders, files in os.walk(path):
            subfolders[:] = [d for d in subfolders if not d.startswith(".") and d not in _SKIPPED]
            found.update(Path(folder) / f for f in files if f.endswith(TEST_SUFFIX))
    return sorted(found)


def load_test_file(path: Path, display: str) -> TestFile:
    """Parse and check a test file; raises TestFileError with every problem found."""
    doc = load_source(path, display=display)
    if doc.issues:
        raise TestFileError(doc.issues)
    if not isinstance(doc.data, dict):
        raise TestFileError([doc.issue((), "a test file is a mapping with `mesh:` and `cases:`")])
    try:
        spec = TestFileSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise TestFileError([_issue(doc, error) for error in exc.errors()]) from None
    issues = [doc.issue(("cases", i, "expect", "assert", j), message)
              for i, case in enumerate(spec.cases) for j, text in enumerate(case.expect.asserts)
              for _, message in compile_expression(text)[1]]
    mesh = (path.parent / spec.mesh).resolve()
    if not mesh.is_file():
        issues.append(doc.issue(("mesh",), f"no mesh file at {spec.mesh} (a path relative to "
                                           "this test file)"))
    if issues:
        raise TestFileError(issues)
    return TestFile(path, display, mesh, spec.cases, doc)


def _issue(doc: SourceDoc, error: Any) -> Issue:
    path, on_key, message = explain(error, doc.data)
    while path and tuple(path) not in doc.values:
        path = path[:-1]  # parts the file does not have (a lone stub answer is a list of one)
    if error["type"] == "too_short" and "stubs" in path:
        message = "a stub needs at least one answer"
    if error["type"] == "extra_forbidden":
        key = str(path[-1]) if path else ""
        close = difflib.get_close_matches(key, _VOCABULARY, n=1, cutoff=0.75)
        message = f"unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else "")
    return doc.issue(path, message, key=on_key)

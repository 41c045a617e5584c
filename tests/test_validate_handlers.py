"""`validate` checks a handler's annotations against the `input:`/`output:` the file declares.

A proven misfit is an error at the `output:` (or `input:`) key; a possible one a warning.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cli import main
from tests.helpers import write_mesh

HANDLERS = """
    from typing import AsyncIterator, Literal, Optional
    from pydantic import BaseModel, ConfigDict, Field, model_serializer

    class Meta(BaseModel):
        owner: str

    class Ticket(BaseModel):
        title: str
        score: str
        notes: str = ""
        meta: Meta
        level: Literal["low", "high"] = "low"

    class Loose(BaseModel):
        model_config = ConfigDict(extra="allow")
        title: str

    class Order(BaseModel):
        item: str
        qty: int = 1

    def ticket(payload) -> Ticket:
        return Ticket(title="t", score="1", meta=Meta(owner="me"))

    def maybe(payload) -> Optional[Ticket]:
        return None

    def words(payload) -> list[str]:
        return []

    def loose(payload) -> Loose:
        return Loose(title="t")

    def order(req: Order) -> dict:
        return {}

    async def chunks(payload) -> AsyncIterator[Meta]:
        yield Meta(owner="me")

    def nothing(payload) -> None:
        pass

    class Wrapped(BaseModel):
        x: int

        @model_serializer(mode="wrap")
        def add(self, handler):
            return {**handler(self), "extra": 1}

    def wrapped(payload) -> Wrapped:
        return Wrapped(x=1)

    class Named(BaseModel):
        y: int = Field(alias="why")

    def named(payload) -> Named:
        return Named(why=1)  # dumped as {"y": 1}: by field name
"""


def validate(tmp_path: Path, text: str,
             capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    path, _ = write_mesh(tmp_path, text, HANDLERS)
    code = main(["validate", "-f", str(path)])
    err = capsys.readouterr().err
    return code, [line.replace(str(path), "mesh.yaml") for line in err.splitlines()]


def test_a_field_of_the_wrong_type_is_an_error(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(tmp_path, """
        version: 1
        agents:
          a:
            handler: {mod}:ticket
            output:
              type: object
              properties:
                score: {type: number}
        """, capsys) == (1, [
        "mesh.yaml:5:5: agents.a.output: the handler returns Ticket, whose field 'score' is "
        "string, but output takes number for 'score': no result can ever match it"])


def test_a_required_key_the_model_lacks_and_a_forbidden_one_it_has(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(tmp_path, """
        version: 1
        agents:
          a:
            handler: {mod}:ticket
            output:
              type: object
              additionalProperties: false
              required: [title, priority]
              properties:
                title: {type: string}
                score: {type: string}
                meta: {type: object}
                level: {enum: [low, high]}
                priority: {type: integer}
        """, capsys) == (1, [
        "mesh.yaml:5:5: agents.a.output: output allows no field 'notes' (additionalProperties: "
        "false), but the handler returns Ticket, which always has it: no result can ever "
        "match it",
        "mesh.yaml:5:5: agents.a.output: output requires 'priority', but the handler returns "
        "Ticket, which has no field 'priority': no result can ever match it"])


def test_nested_fields_and_literal_values_are_followed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(tmp_path, """
        version: 1
        agents:
          a:
            handler: {mod}:ticket
            output:
              type: object
              properties:
                meta:
                  type: object
                  required: [owner, team]
                  additionalProperties: false
                  properties: {owner: {type: string}, team: {type: string}}
                level: {enum: [urgent, later]}
        """, capsys) == (1, [
        "mesh.yaml:5:5: agents.a.output: output requires 'meta.team', but the handler returns "
        "Ticket, which has no field 'meta.team': no result can ever match it",
        "mesh.yaml:5:5: agents.a.output: the handler returns Ticket, whose field 'level' is "
        "one of \"low\", \"high\", but output takes only \"urgent\", \"later\" for 'level': "
        "no result can ever match it"])


def test_a_result_or_stream_chunk_of_the_wrong_kind_is_an_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(tmp_path, """
        version: 1
        agents:
          a:
            handler: {mod}:words
            output: {type: object}
          b:
            handler: {mod}:nothing
            output: {type: object}
          c:
            handler: {mod}:chunks
            output: {type: object, required: [owner, team]}
        """, capsys) == (1, [
        "mesh.yaml:5:5: agents.a.output: the handler returns list[str], which is array, but "
        "output takes object: no result can ever match it",
        "mesh.yaml:8:5: agents.b.output: the handler returns None, which is null, but output "
        "takes object: no result can ever match it",
        "mesh.yaml:11:5: agents.c.output: output requires 'team', but the handler returns "
        "Meta, which has no field 'team': no result can ever match it"])


def test_a_possible_misfit_is_a_warning(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(tmp_path, """
        version: 1
        agents:
          a:
            handler: {mod}:maybe
            output: {type: object, required: [title]}
        """, capsys) == (0, [
        "mesh.yaml:5:5: warning: agents.a.output: the handler returns Optional[Ticket], which "
        "is maybe null, but output takes object"])


@pytest.mark.parametrize(("handler", "output"), [
    ("ticket", "{type: object, required: [title, score, meta], properties: {score: {}}}"),
    ("ticket", "{$ref: '#/$defs/t', $defs: {t: {type: object}}}"),
    ("loose", "{type: object, required: [extra]}"),  # extra="allow": it may be there
    ("words", "{type: array, items: {type: string}}"),
    ("order", "{type: object, required: [anything]}"),  # a plain dict: nothing known
    ("wrapped", "{type: object, required: [extra]}"),  # its serializer adds keys
    ("named", "{type: object, additionalProperties: false, required: [y], properties: {y: {}}}"),
])
def test_results_that_may_fit_are_not_second_guessed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], handler: str, output: str) -> None:
    assert validate(tmp_path, f"""
        version: 1
        agents:
          a:
            handler: {{mod}}:{handler}
            output: {output}
        """, capsys) == (0, [])


def test_an_input_that_can_never_give_the_model_its_required_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(tmp_path, """
        version: 1
        agents:
          a:
            handler: {mod}:order
            input:
              type: object
              additionalProperties: false
              properties: {itme: {type: string}, qty: {type: integer}}
          b:
            handler: {mod}:order
            input: {type: string}
          c:
            handler: {mod}:order
            input: {type: object, properties: {qty: {type: integer}}}
        """, capsys) == (1, [
        "mesh.yaml:5:5: agents.a.input: the handler's parameter model Order requires 'item', "
        "but input allows no such field (additionalProperties: false): every request would "
        "fail the model",
        "mesh.yaml:11:5: agents.b.input: input takes string, but the handler's parameter model "
        "Order takes an object: every request would fail the model"])

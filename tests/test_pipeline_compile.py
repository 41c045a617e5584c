"""Load-time checks of pipelines: structure, names, references, cycles, constants."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from runtime.pipeline.engine import check_constants, compile_pipeline, find_cycles
from runtime.pipeline.spec import PipelineSpec
from tests.pipeline_examples import DIGEST

AGENTS = {"nlp.summarizer", "nlp.sentiment", "nlp.keywords", "nlp.translate"}


def spec(data: dict[str, Any]) -> PipelineSpec:
    return PipelineSpec.model_validate(data)


def problems(steps: list[dict[str, Any]], **more: Any) -> list[tuple[tuple[Any, ...], str]]:
    _, found = compile_pipeline("p", spec({"steps": steps, **more}), AGENTS | {"p"})
    return found


def call(step_id: str | None = "a", agent: str = "nlp.sentiment", **more: Any) -> dict[str, Any]:
    step: dict[str, Any] = {"call": agent, **more}
    if step_id is not None:
        step["id"] = step_id
    return step


def test_the_design_example_compiles():
    compiled, found = compile_pipeline("nlp.digest", spec(DIGEST), AGENTS)
    assert found == []
    assert compiled is not None
    assert compiled.name == "nlp.digest"


def test_unknown_agent_suggests_a_close_name():
    assert problems([call(agent="nlp.sentimant"), call("b", agent="zzz")]) == [
        (
            ("steps", 0, "call"),
            "unknown agent or pipeline 'nlp.sentimant'; did you mean 'nlp.sentiment'?",
        ),
        (("steps", 1, "call"), "unknown agent or pipeline 'zzz'"),
    ]


def test_duplicate_ids_anywhere_in_the_pipeline():
    steps = [
        call("a"),
        call("a"),
        {"id": "b", "parallel": {"x": call("a"), "y": [call("c"), call("c")]}},
    ]
    assert problems(steps) == [
        (("steps", 1, "id"), "duplicate step id 'a' (first at steps[0])"),
        (("steps", 2, "parallel", "x", "id"), "duplicate step id 'a' (first at steps[0])"),
        (
            ("steps", 2, "parallel", "y", 1, "id"),
            "duplicate step id 'c' (first at steps[2].parallel.y[0])",
        ),
    ]


def test_ids_and_branch_names_are_plain_names_and_top_level_steps_need_one():
    steps = [call("per-section"), call(None), {"id": "b", "parallel": {"1x": call(None)}}]
    assert problems(steps) == [
        (
            ("steps", 0, "id"),
            "step id 'per-section' must be letters, digits and _, not starting with a digit",
        ),
        (("steps", 1), "a top-level step needs an id"),
        (
            ("steps", 2, "parallel", "1x"),
            "branch name '1x' must be letters, digits and _, not starting with a digit",
        ),
    ]


def test_a_step_reads_only_earlier_steps():
    steps = [
        call("a", **{"with": {"t": "${{ steps.b.x }}"}}),
        call("b", when="steps.b.ok"),
        call("c", **{"with": {"t": "${{ steps.nope }}", "u": "${{ steps.a.x }}"}}),
    ]
    assert problems(
        steps, returns={"x": "${{ steps.c }}", "y": "${{ steps.zz }}", "z": "${{ steps.cc.x }}"}
    ) == [
        (
            ("steps", 0, "with", "t"),
            "expression 'steps.b.x' reads steps.b, which has not run yet here"
            " (only earlier steps can be read)",
        ),
        (("steps", 1, "when"), "expression 'steps.b.ok' reads steps.b, its own step's result"),
        (
            ("steps", 2, "with", "t"),
            "expression 'steps.nope' reads steps.nope, but no step has id 'nope'",
        ),
        (("returns", "y"), "expression 'steps.zz' reads steps.zz, but no step has id 'zz'"),
        (
            ("returns", "z"),
            "expression 'steps.cc.x' reads steps.cc, but no step has id 'cc'; did you mean 'c'?",
        ),
    ]


def test_branch_steps_see_earlier_steps_of_their_own_branch_only():
    steps = [
        call("first"),
        {
            "id": "fan",
            "parallel": {
                "left": [
                    call("l1"),
                    call("l2", **{"with": {"t": "${{ steps.l1 }}", "f": "${{ steps.first }}"}}),
                ],
                "right": call("r1", **{"with": {"t": "${{ steps.l1 }}", "s": "${{ steps.fan }}"}}),
            },
        },
        call("after", **{"with": {"t": "${{ steps.l2 }}", "f": "${{ steps.fan.left }}"}}),
    ]
    inside = "which runs inside a parallel branch (only later steps of that branch see it)"
    assert problems(steps) == [
        (
            ("steps", 1, "parallel", "right", "with", "t"),
            f"expression 'steps.l1' reads steps.l1, {inside}",
        ),
        (
            ("steps", 1, "parallel", "right", "with", "s"),
            "expression 'steps.fan' reads steps.fan, its own step's result",
        ),
        (("steps", 2, "with", "t"), f"expression 'steps.l2' reads steps.l2, {inside}"),
    ]


def test_names_outside_the_scope():
    steps = [
        call(
            "a",
            **{"with": {"t": "${{ inputs.text }}", "m": "${{ mesh.nmae }}", "i": "${{ item }}"}},
        ),
        call(
            "b",
            for_each="input.xs",
            when="index == `0`",
            **{"with": {"t": "${{ item }}", "i": "${{ index }}"}},
        ),
        {
            "id": "c",
            "for_each": "input.xs",
            "parallel": {"x": call(None, **{"with": {"t": "${{ item }}"}})},
        },
    ]
    assert problems(steps) == [
        (
            ("steps", 0, "with", "t"),
            "expression 'inputs.text' reads 'inputs', which is not in scope (input, steps, mesh);"
            " did you mean 'input'?",
        ),
        (
            ("steps", 0, "with", "m"),
            "expression 'mesh.nmae' reads mesh.nmae, but mesh has only name and request_id",
        ),
        (
            ("steps", 0, "with", "i"),
            "expression 'item' reads 'item', which is set only inside for_each",
        ),
        (
            ("steps", 1, "when"),
            "expression 'index == `0`' reads 'index', which is set only inside for_each",
        ),
    ]


def test_expression_syntax_errors_have_their_paths():
    steps = [
        call("a", when="input.[", for_each="   ", **{"with": {"a": {"b": ["${{ foo bar }}"]}}}),
        call("b", when="", for_each="nope(x)"),
    ]
    assert problems(steps, returns="${{ steps.a b }}") == [
        (("steps", 0, "when"), "invalid expression 'input.[': incomplete expression at column 8"),
        (("steps", 0, "for_each"), "for_each needs an expression, like input.sections"),
        (
            ("steps", 0, "with", "a", "b", 0),
            "invalid expression 'foo bar': unexpected token: bar at column 5",
        ),
        (("steps", 1, "when"), "when needs an expression, like input.lang != 'en'"),
        (("steps", 1, "for_each"), "invalid expression 'nope(x)': unknown function nope()"),
        (("returns",), "invalid expression 'steps.a b': unexpected token: b at column 9"),
    ]


def test_options_that_do_not_fit_the_step():
    steps = [
        call("a", max_concurrency=2, max_items=5),
        {"id": "b", "parallel": {}, "with": {"x": 1}, "retry": {"attempts": 2}},
        {"id": "c", "parallel": {"x": []}},
    ]
    assert problems(steps) == [
        (("steps", 0, "max_concurrency"), "max_concurrency applies to for_each steps"),
        (("steps", 0, "max_items"), "max_items applies to for_each steps"),
        (("steps", 1, "with"), "with applies to call steps; set it on the branches' steps"),
        (("steps", 1, "retry"), "retry applies to call steps; set it on the branches' steps"),
        (("steps", 1, "parallel"), "parallel needs at least one branch"),
        (("steps", 2, "parallel", "x"), "a branch needs at least one step"),
    ]


@pytest.mark.parametrize(
    ("step", "loc", "message"),
    [
        (
            {"id": "a"},
            ("steps", 0),
            "Value error, a step needs exactly one of 'call', 'capability', 'broadcast', 'parallel', "
            "'get_state', 'set_state', 'emit', 'wait' or 'sleep'",
        ),
        (
            {"id": "a", "call": "x", "parallel": {"b": {"call": "y"}}},
            ("steps", 0),
            "Value error, a step needs exactly one of 'call', 'capability', 'broadcast', 'parallel', "
            "'get_state', 'set_state', 'emit', 'wait' or 'sleep'",
        ),
        (
            {"id": "a", "call": "x", "wiht": {}},
            ("steps", 0, "wiht"),
            "Extra inputs are not permitted",
        ),
        (
            {"id": "a", "call": "x", "retry": {"attempts": 0}},
            ("steps", 0, "retry", "attempts"),
            "Input should be greater than or equal to 1",
        ),
        (
            {"id": "a", "call": "x", "for_each": "i", "max_concurrency": 0},
            ("steps", 0, "max_concurrency"),
            "Input should be greater than or equal to 1",
        ),
        (
            {"id": "a", "call": "x", "on_error": {}},
            ("steps", 0, "on_error", "value"),
            "Field required",
        ),
        (
            {"id": "a", "call": "x", "timeout": "soon"},
            ("steps", 0, "timeout"),
            "Value error, invalid duration 'soon': use a number with a unit, like 250ms, 5s, 2m",
        ),
    ],
)
def test_structure_errors_come_from_the_models(step, loc, message):
    with pytest.raises(ValidationError) as caught:
        spec({"steps": [step]})
    errors = [(e["loc"], e["msg"]) for e in caught.value.errors()]
    assert errors == [(loc, message)]


def test_models_parse_durations_aliases_and_defaults():
    parsed = spec(
        {
            "steps": [
                call(
                    "a",
                    retry={"attempts": 3, "backoff": "250ms"},
                    timeout="2s",
                    **{"with": {"x": 1}},
                )
            ],
            "timeout": "1m",
        }
    )
    step = parsed.steps[0]
    assert (step.with_, step.timeout, parsed.timeout) == ({"x": 1}, 2.0, 60.0)
    assert step.retry is not None
    assert (step.retry.attempts, step.retry.backoff, step.retry.max_backoff) == (3, 0.25, 2.0)
    assert (parsed.version, parsed.tags, parsed.returns) == ("1.0.0", [], None)
    with pytest.raises(ValidationError):
        spec({"steps": []})
    with pytest.raises(ValidationError):
        spec({"steps": [call()], "extra": 1})


def pipelines(calls: dict[str, list[str]]) -> dict[str, PipelineSpec]:
    return {
        name: spec(
            {
                "steps": [call(f"s{i}", target) for i, target in enumerate(targets)]
                or [call("s", "nlp.sentiment")]
            }
        )
        for name, targets in calls.items()
    }


def test_find_cycles_reports_each_cycle_once_at_its_first_pipeline():
    found = find_cycles(
        pipelines({"b": ["nlp.keywords", "a"], "a": ["c", "b"], "c": ["a"], "d": ["d"], "e": ["a"]})
    )
    assert found == [
        ("a", ("steps", 0, "call"), "pipelines call each other in a cycle: a -> c -> a"),
        ("d", ("steps", 0, "call"), "pipeline 'd' calls itself"),
    ]


def test_no_cycle_when_two_pipelines_share_a_callee():
    assert find_cycles(pipelines({"a": ["c"], "b": ["c", "a"], "c": []})) == []


def test_a_cycle_through_a_parallel_branch_points_at_that_call():
    found = find_cycles(
        {
            "a": spec(
                {
                    "steps": [
                        {
                            "id": "x",
                            "parallel": {"one": [call("p", "nlp.sentiment"), call("q", "b")]},
                        }
                    ]
                }
            ),
            "b": spec({"steps": [call("y", "a")]}),
        }
    )
    assert found == [
        (
            "a",
            ("steps", 0, "parallel", "one", 1, "call"),
            "pipelines call each other in a cycle: a -> b -> a",
        )
    ]


SUMMARIZER_INPUT = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "max_length": {"$ref": "#/$defs/length"},
        "style": {"enum": ["short", "long"]},
    },
    "required": ["text"],
    "additionalProperties": False,
    "$defs": {"length": {"type": "integer", "minimum": 1}},
}


def constant_warnings(
    with_: dict[str, Any] | None, schema: dict[str, Any] | None = SUMMARIZER_INPUT
):
    step = call("a", "nlp.summarizer") | ({"with": with_} if with_ is not None else {})
    return check_constants(
        "p", spec({"steps": [step]}), lambda name: schema if name == "nlp.summarizer" else None
    )


def test_constants_are_checked_against_the_callee_input_schema():
    assert constant_warnings({"text": "${{ input.t }}", "max_length": "abc", "style": "tiny"}) == [
        (
            ("steps", 0, "with", "max_length"),
            "constant 'abc' for max_length does not match nlp.summarizer's input schema:"
            " 'abc' is not of type 'integer'",
        ),
        (
            ("steps", 0, "with", "style"),
            "constant 'tiny' for style does not match nlp.summarizer's input schema:"
            " 'tiny' is not one of ['short', 'long']",
        ),
    ]
    assert constant_warnings({"text": "x", "max_length": 0}) == [
        (
            ("steps", 0, "with", "max_length"),
            "constant 0 for max_length does not match nlp.summarizer's input schema:"
            " 0 is less than the minimum of 1",
        ),
    ]


def test_keys_the_schema_does_not_allow_and_required_keys_missing():
    assert constant_warnings({"txt": "${{ input.t }}", "max_length": 5}) == [
        (
            ("steps", 0, "with", "txt"),
            "nlp.summarizer's input schema has no property 'txt' and allows no others",
        ),
        (
            ("steps", 0, "with"),
            "nlp.summarizer's input schema requires 'text', which with: does not set",
        ),
    ]


def test_nothing_to_check_without_schema_or_with_or_for_valid_constants():
    assert constant_warnings({"text": "x", "max_length": 3, "style": "short"}) == []
    assert constant_warnings({"txt": 1}, schema=None) == []
    assert constant_warnings(None) == []
    open_schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert constant_warnings({"n": "${{ input.n }}", "other": 1}, schema=open_schema) == []

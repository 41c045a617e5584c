"""Templates and bare expressions: compiled once, rendered with the JSON type kept."""

from __future__ import annotations

import jmespath
import pytest

from runtime.pipeline.expressions import (
    EvaluationError,
    compile_expression,
    compile_template,
    referenced_steps,
    split_template,
    to_text,
)

SCOPE = {
    "input": {"text": "hi", "n": 3, "items": [1, 2], "obj": {"k": "v"}, "off": False, "none": None},
    "steps": {"summary": {"summary": "short"}},
    "mesh": {"name": "demo", "request_id": "r-1"},
}


def render(value):
    template, problems = compile_template(value)
    assert problems == []
    return template.render(SCOPE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${{ input.n }}", 3),
        ("${{input.items}}", [1, 2]),
        ("${{ input.obj }}", {"k": "v"}),
        ("${{ input.off }}", False),
        ("${{ input.missing }}", None),
        ("  ${{ input.n }}  ", 3),
        ("${{ input.n }}\n", 3),
        ("${{ {a: input.n, b: steps.summary.summary} }}", {"a": 3, "b": "short"}),
        ('${{ `"}}"` }}', "}}"),
        ("${{ mesh.request_id }}", "r-1"),
    ],
)
def test_whole_string_expression_keeps_its_json_type(text, expected):
    assert render(text) == expected


def test_text_around_expressions_makes_a_string():
    text = "t=${{ input.text }} n=${{ input.n }} l=${{ input.items }} o=${{ input.obj }}"
    assert render(text) == 't=hi n=3 l=[1,2] o={"k":"v"}'
    assert render("[${{ input.none }}] ${{ input.off }}") == "[] false"
    assert render("${{ input.n }}${{ input.n }}") == "33"


def test_to_text_renders_null_as_empty_and_the_rest_as_compact_json():
    assert [to_text(v) for v in ("é", None, 1.5, True, [1, "a"])] == [
        "é",
        "",
        "1.5",
        "true",
        '[1,"a"]',
    ]


def test_dicts_and_lists_render_recursively_and_constants_stay():
    value = {"a": ["${{ input.text }}", 1, {"b": "${{ input.n }}"}], "c": "plain", "d": None}
    assert render(value) == {"a": ["hi", 1, {"b": 3}], "c": "plain", "d": None}


def test_a_template_without_expressions_returns_the_same_object():
    value = {"a": [1, 2], "b": "text with $ and {{ braces }}"}
    template, problems = compile_template(value)
    assert problems == []
    assert template.is_constant
    assert template.render(SCOPE) is value
    assert template.expressions == ()


def test_template_lists_each_expression_with_its_path():
    template, _ = compile_template({"a": ["x", "${{ input.n }}"]}, ("with",))
    assert [(path, expr.text) for path, expr in template.expressions] == [
        (("with", "a", 1), "input.n")
    ]
    assert not template.is_constant


def test_syntax_errors_come_out_as_problems_with_paths():
    _, problems = compile_template({"a": {"b": "x ${{ input.[ }} ${{ foo bar }}"}}, ("with",))
    assert problems == [
        (("with", "a", "b"), "invalid expression 'input.[': incomplete expression at column 8"),
        (("with", "a", "b"), "invalid expression 'foo bar': unexpected token: bar at column 5"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${{ input.n", "unclosed '${{' in '${{ input.n': add '}}'"),
        ("${{ }}", "empty expression"),
        ("${{ a ~ b }}", "invalid expression 'a ~ b': unknown token ~ at column 3"),
        ("${{ a == 'x }}", "unclosed ' quote in \"${{ a == 'x }}\""),
        ("${{ nope(a) }}", "invalid expression 'nope(a)': unknown function nope()"),
        (
            "${{ length(a, b) }}",
            "invalid expression 'length(a, b)': length() takes 1 argument, 2 given",
        ),
        (
            "${{ not_null() }}",
            "invalid expression 'not_null()': not_null() takes at least 1 argument, 0 given",
        ),
    ],
)
def test_template_problem_messages(text, message):
    _, problems = compile_template(text, ("x",))
    assert problems == [(("x",), message)]


def test_bare_expressions():
    expr, problems = compile_expression("input.lang != 'en'", ("when",))
    assert problems == []
    assert expr is not None
    assert expr.render({"input": {"lang": "fr"}}) is True
    assert compile_expression("", ("when",)) == (None, [(("when",), "empty expression")])
    assert compile_expression("a.", ("when",))[1] == [
        (
            ("when",),
            "invalid expression 'a.': expecting: ['quoted_identifier', 'unquoted_identifier', "
            "'lbracket', 'lbrace'], got: eof at column 3",
        )
    ]


@pytest.mark.parametrize(
    ("value", "truthy"),
    [
        *[(0, True), (1, True), ("x", True), ([0], True), ({"a": 1}, True), (True, True)],
        *[(False, False), (None, False), ("", False), ([], False), ({}, False)],
    ],
)
def test_truthiness_follows_jmespath(value, truthy):
    expr, _ = compile_expression("input")
    assert expr is not None
    assert expr.truthy({"input": value}) is truthy


def test_evaluation_errors_name_the_expression():
    template, _ = compile_template("${{ abs(input.text) }}")
    with pytest.raises(EvaluationError) as caught:
        template.render(SCOPE)
    assert str(caught.value) == (
        "expression 'abs(input.text)' failed: In function abs(), invalid type for value: hi, "
        "expected one of: ['number'], received: \"string\""
    )


@pytest.mark.parametrize(
    ("expr", "steps"),
    [
        ("steps.summary.summary", {"summary"}),
        ('steps.a[0].b || steps."b"', {"a", "b"}),
        ("steps.a[*].b", {"a"}),
        ("{x: steps.a, y: length(steps.b)}", {"a", "b"}),
        ("sort_by(steps.a, &steps.b)", {"a"}),  # &... is evaluated per element
        ("input.items[*].steps.x", set()),  # a field of each item, not the scope
        ("input.items[?steps.x]", set()),
        ("steps", set()),
        ("steps.*", set()),
        ("@.steps.a", {"a"}),
        ("input.steps.a", set()),
    ],
)
def test_referenced_steps(expr, steps):
    assert referenced_steps(expr) == steps


def test_roots_name_what_an_expression_reads_from_the_scope():
    expr, _ = compile_expression("input.a || inputs.b || item || mesh.name")
    assert expr is not None
    assert expr.roots() == {("input", "a"), ("inputs", "b"), ("item", None), ("mesh", "name")}


def test_split_template_skips_braces_and_quotes_inside_expressions():
    pieces, error = split_template("a ${{ {k: '}}'} }} b")
    assert error is None
    assert pieces == ["a ", (" {k: '}}'} ",), " b"]


@pytest.mark.parametrize(
    "text",
    ["input", "input.text", "input.items.x", "input.none.x", "nope.x", "input.text.len", "steps"],
)
def test_plain_field_chains_read_exactly_like_jmespath(text):
    expr, _ = compile_expression(text)
    assert expr is not None
    assert expr.render(SCOPE) == jmespath.search(text, SCOPE)

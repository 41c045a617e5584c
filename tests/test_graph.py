"""Pipelines as Mermaid flowcharts."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.pipeline.graph import escape, to_mermaid
from runtime.pipeline.spec import PipelineSpec
from tests.pipeline_examples import DIGEST


def specs(**pipelines: dict[str, Any]) -> dict[str, PipelineSpec]:
    return {name.replace("_", "."): PipelineSpec.model_validate(p) for name, p in pipelines.items()}


def test_the_design_example_as_a_flowchart():
    assert to_mermaid(specs(nlp_digest=DIGEST)).splitlines() == [
        "flowchart TD",
        '  subgraph p0 ["nlp.digest"]',
        '    p0_1(["input"])',
        '    p0_2["summary<br/>→ nlp.summarizer"]',
        "    p0_1 --> p0_2",
        '    p0_3{{"analysis<br/>parallel"}}',
        "    p0_2 --> p0_3",
        '    p0_4["sentiment<br/>→ nlp.sentiment"]',
        '    p0_3 -->|"sentiment"| p0_4',
        '    p0_5["keywords<br/>→ nlp.keywords"]',
        '    p0_3 -->|"keywords"| p0_5',
        "    p0_6{\"when: input.lang != 'en'\"}",
        "    p0_4 --> p0_6",
        "    p0_5 --> p0_6",
        '    p0_7["translated<br/>→ nlp.translate<br/>retry 3×, timeout 2s, on error: null"]',
        '    p0_6 -->|"yes"| p0_7',
        '    p0_8[["per_section<br/>→ nlp.summarizer<br/>for each input.sections (max 8)"]]',
        "    p0_7 --> p0_8",
        '    p0_6 -.->|"no"| p0_8',
        '    p0_9(["returns: summary, sentiment, sections"])',
        "    p0_8 --> p0_9",
        "  end",
    ]


def test_branch_sequences_chain_inside_their_branch_and_join_at_the_next_node():
    pipeline = {
        "steps": [
            {
                "id": "fan",
                "parallel": {
                    "left": [{"id": "l1", "call": "a"}, {"call": "b", "timeout": "250ms"}],
                    "right": {"call": "c", "for_each": "input.xs"},
                },
            },
        ]
    }
    lines = to_mermaid(specs(p=pipeline)).splitlines()
    assert lines[2:] == [
        '    p0_1(["input"])',
        '    p0_2{{"fan<br/>parallel"}}',
        "    p0_1 --> p0_2",
        '    p0_3["l1<br/>→ a"]',
        '    p0_2 -->|"left"| p0_3',
        '    p0_4["→ b<br/>timeout 250ms"]',
        "    p0_3 --> p0_4",
        '    p0_5[["right<br/>→ c<br/>for each input.xs"]]',
        '    p0_2 -->|"right"| p0_5',
        '    p0_6(["output"])',
        "    p0_4 --> p0_6",
        "    p0_5 --> p0_6",
        "  end",
    ]


def test_several_pipelines_are_subgraphs_of_one_flowchart():
    one = {"steps": [{"id": "x", "call": "a"}]}
    text = to_mermaid(specs(first=one, second=one))
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert [line for line in lines if "subgraph" in line or line == "  end"] == [
        '  subgraph p0 ["first"]',
        "  end",
        '  subgraph p1 ["second"]',
        "  end",
    ]
    assert '    p1_2["x<br/>→ a"]' in lines
    assert text == to_mermaid(specs(first=one, second=one))  # deterministic


def test_only_one_pipeline_and_unknown_names():
    one = {"steps": [{"id": "x", "call": "a"}]}
    assert to_mermaid(specs(first=one, second=one), only="second").splitlines()[1] == (
        '  subgraph p0 ["second"]'
    )
    with pytest.raises(ValueError) as caught:
        to_mermaid(specs(b=one, a=one), only="x")
    assert str(caught.value) == "no pipeline named 'x'; pipelines: a, b"


def test_labels_escape_what_mermaid_would_read_as_syntax():
    assert escape('say "hi" <b> #1 & `x`') == "say #quot;hi#quot; #lt;b#gt; #35;1 #amp; #96;x#96;"
    pipeline = {
        "steps": [{"id": "x", "call": "a", "when": 'input.t == "a"', "on_error": {"value": "n/a"}}]
    }
    lines = to_mermaid(specs(p=pipeline)).splitlines()
    assert '    p0_2{"when: input.t == #quot;a#quot;"}' in lines
    assert '    p0_3["x<br/>→ a<br/>on error: #quot;n/a#quot;"]' in lines

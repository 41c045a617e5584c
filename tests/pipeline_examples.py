"""Pipeline specs shared by the pipeline tests."""

from __future__ import annotations

from typing import Any

# The `nlp.digest` pipeline of DESIGN.md section 2, as parsed YAML.
DIGEST: dict[str, Any] = {
    "steps": [
        {
            "id": "summary",
            "call": "nlp.summarizer",
            "with": {"text": "${{ input.text }}", "max_length": 80},
        },
        {
            "id": "analysis",
            "parallel": {
                "sentiment": {
                    "call": "nlp.sentiment",
                    "with": {"text": "${{ steps.summary.summary }}"},
                },
                "keywords": {
                    "call": "nlp.keywords",
                    "with": {"text": "${{ steps.summary.summary }}"},
                },
            },
        },
        {
            "id": "translated",
            "when": "input.lang != 'en'",
            "call": "nlp.translate",
            "with": {"text": "${{ steps.summary.summary }}", "to": "${{ input.lang }}"},
            "retry": {"attempts": 3, "backoff": "100ms", "max_backoff": "2s"},
            "timeout": "2s",
            "on_error": {"value": None},
        },
        {
            "id": "per_section",
            "for_each": "input.sections",
            "max_concurrency": 8,
            "call": "nlp.summarizer",
            "with": {"text": "${{ item }}"},
        },
    ],
    "returns": {
        "summary": "${{ steps.summary.summary }}",
        "sentiment": "${{ steps.analysis.sentiment.label }}",
        "sections": "${{ steps.per_section }}",
    },
}

"""The summarizer's handler: deterministic, no model and no network."""

from __future__ import annotations

import re
from typing import Any

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def summarize(payload: dict[str, Any]) -> dict[str, Any]:
    """Keep whole leading sentences while they fit in max_length characters.

    When even the first sentence is too long, it is cut at the last word boundary
    that fits (or hard at max_length for a single long word). A plain `def`
    handler: mesh-runtime runs it in a thread pool, never on the event loop.
    """
    text = " ".join(payload["text"].split())  # one space between words
    limit = payload["max_length"]  # filled in from the schema's default when absent
    kept: list[str] = []
    for sentence in _SENTENCE_END.split(text) if text else []:
        if len(" ".join([*kept, sentence])) > limit:
            break
        kept.append(sentence)
    summary = " ".join(kept) if kept else _cut(text, limit)
    return {"summary": summary, "length": len(summary), "sentences": len(kept),
            "truncated": summary != text}


def _cut(text: str, limit: int) -> str:
    head = text[:limit]
    if len(text) > limit and text[limit] != " " and " " in head:
        head = head.rsplit(" ", 1)[0]
    return head.rstrip()

"""Small, deterministic NLP-ish handlers for the demo mesh (no models, no network)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

_POSITIVE = {"good", "great", "excellent", "love", "happy", "fast", "clear", "win", "best"}
_NEGATIVE = {"bad", "poor", "terrible", "hate", "sad", "slow", "broken", "lose", "worst"}
_STOP = {"the", "a", "an", "and", "or", "of", "to", "in", "is", "it", "for", "on", "with",
         "that", "this", "as", "are", "be", "by", "at", "from", "was", "we", "you"}


def summarize(payload: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Keep whole sentences up to max_length characters (a sync handler: runs in a thread)."""
    limit = payload["max_length"]
    sentences = re.split(r"(?<=[.!?])\s+", payload["text"].strip())
    summary = ""
    for sentence in sentences:
        candidate = f"{summary} {sentence}".strip()
        if len(candidate) > limit:
            break
        summary = candidate
    if not summary:
        summary = payload["text"][:limit].rstrip()
    if ctx.config.get("style") == "short" and len(summary) > limit:
        summary = summary[:limit]
    return {"summary": summary, "length": len(summary)}


async def sentiment(payload: dict[str, Any]) -> dict[str, Any]:
    """Count positive and negative words (an async handler)."""
    words = re.findall(r"[a-z']+", payload["text"].lower())
    score = sum(w in _POSITIVE for w in words) - sum(w in _NEGATIVE for w in words)
    label = "positive" if score > 0 else "negative" if score < 0 else "neutral"
    return {"label": label, "score": score}


async def keywords(payload: dict[str, Any]) -> dict[str, Any]:
    """The most frequent words that are not stop words."""
    words = [w for w in re.findall(r"[a-z']+", payload["text"].lower())
             if w not in _STOP and len(w) > 2]
    top = [w for w, _ in Counter(words).most_common(payload.get("limit", 5))]
    return {"keywords": top}


async def translate(payload: dict[str, Any]) -> dict[str, Any]:
    """A stand-in translator: tags the text with the target language."""
    return {"text": f"[{payload['to']}] {payload['text']}", "to": payload["to"]}


async def tokens(payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """A streaming agent: one chunk per word."""
    for index, word in enumerate(payload["text"].split()):
        yield {"index": index, "token": word}
        await asyncio.sleep(payload.get("delay", 0))

"""Names of agents, pipelines and capabilities: dotted, each segment [A-Za-z0-9_-]+, since a
name becomes the tail of a NATS subject."""

from __future__ import annotations

import re

NAME_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
_NAME = re.compile(NAME_PATTERN)


def check_name(name: str) -> str:
    """A dotted name whose segments are [A-Za-z0-9_-]+: it becomes a NATS subject tail."""
    if not _NAME.fullmatch(name):  # match() would let a trailing newline through ($)
        bad = [c for c in (" ", "*", ">", "\t") if c in name]
        hint = f" (it contains {' and '.join(repr(c) for c in bad)})" if bad else ""
        raise ValueError(
            f"invalid name '{name}'{hint}: use dot-separated segments of letters, digits, "
            "'_' and '-', like nlp.summarizer"
        )
    return name

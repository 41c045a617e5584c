"""NATS subjects a user writes (a trigger's, `send`'s, `listen`'s): checked before use."""

from __future__ import annotations

import json
import re

_TOKEN = re.compile(r"^[^\s\x00-\x1f\x7f*>.]+$")


def subject_problem(subject: str) -> str | None:
    """Why `subject` cannot be a trigger's subject (wildcards allowed), or None."""
    if not subject:
        return "a subject cannot be empty"
    if subject.startswith("$"):
        return (f"subject '{subject}' starts with '$' (the server's own: $JS, $KV, $SYS); a "
                "trigger may not take it (for a KV bucket, use kv:)")
    tokens = subject.split(".")
    for index, token in enumerate(tokens):
        if token in ("*", ">") and (token == "*" or index == len(tokens) - 1):
            continue
        if not _TOKEN.match(token):
            return (f"invalid subject {json.dumps(subject)}: tokens separated by '.', none "
                    "empty, no spaces or control characters, '*' and '>' only as whole tokens "
                    "('>' last)")
    return None


def matches(pattern: str, subject: str) -> bool:
    """Whether the subject `pattern` (with * and >) takes the literal `subject`."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or token not in ("*", tokens[index]):
            return False
    return len(wanted) == len(tokens)

"""Names of agents, pipelines and capabilities: dotted, each segment [A-Za-z0-9_-]+, since a
name becomes the tail of a NATS subject.

`check_name` is the loader's; `name_problem` is the one cheap check at the boundary, for
every name that comes from a payload, a handler or a record: the serving connection skips
nats-py's subject checks, so a name with a space, a newline or a wildcard would otherwise
be spliced into the protocol as is.
"""

from __future__ import annotations

import re

from runtime.core.text import shown

NAME_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
_NAME = re.compile(NAME_PATTERN)
# A subject travels in one protocol line, which the server caps (max_control_line, 4 KB by
# default): a longer one closes the connection. Names past this are refused at the boundary.
MAX_NAME_LENGTH = 1024
is_name = _NAME.fullmatch  # fullmatch: match() would let a trailing newline through ($)


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


def name_problem(name: object, what: str = "name") -> str | None:
    """Why `name` (an agent name or a capability from outside) cannot be a subject tail,
    or None when it can. The common case costs one length test and one regex match."""
    if isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name):
        return None
    if not isinstance(name, str):
        return f"invalid {what}: a {what} is a string, not {type(name).__name__}"
    if len(name) > MAX_NAME_LENGTH:
        return (f"invalid {what} '{shown(name, 60)}': {len(name)} characters; at most "
                f"{MAX_NAME_LENGTH}")
    return (f"invalid {what} '{shown(name, 100)}': use dot-separated segments of letters, "
            "digits, '_' and '-', like nlp.summarizer (no spaces, control characters, "
            "wildcards, '$' or empty segments)")

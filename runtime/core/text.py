"""Text from outside (callers, handlers, URLs) made safe to log, to put in a subject, to show.

Anything on the bus may send anything: a request id becomes part of a subject, and
an agent name, an id or a handler's message may end up in a log line. Each helper
here is what stands between such text and the protocol or the log.
"""

from __future__ import annotations

import difflib
import re

# A request id goes into `mesh.stream.<id>`: one subject token, no wildcards, no spaces.
REQUEST_ID_PATTERN = r"[A-Za-z0-9_-]{1,128}"
REQUEST_ID_MAX = 128
is_request_id = re.compile(REQUEST_ID_PATTERN).fullmatch

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: each could end
# a log line early or rewrite what a terminal shows.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
MASK = "***"


def escape(text: str) -> str:
    """`text` with every control character written as an escape (`\\n`, `\\x1b`)."""
    if not _CONTROL.search(text):
        return text  # the common case: nothing to copy
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100
                                else f"\\u{ord(char):04x}")


def cut(text: str, limit: int) -> str:
    """`text`, cut to about `limit` characters with a note of how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def shown(text: str, limit: int = 200) -> str:
    """Caller-supplied text as it may appear in a log line: escaped and cut."""
    return escape(cut(text, limit))


def mask_urls(text: str) -> str:
    """`text` (a URL, a list of them, an error message) with every URL's user and password
    (or token) replaced by ***."""
    return _USERINFO.sub(lambda m: f"{m.group(1)}{_masked(m.group(2))}@", text)


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/@\s]+)@")


def _masked(userinfo: str) -> str:
    return f"{MASK}:{MASK}" if ":" in userinfo else MASK


def suggest(name: str, names: list[str]) -> str:
    """`; did you mean 'x'?` for the one name closest to `name`, else ''."""
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""

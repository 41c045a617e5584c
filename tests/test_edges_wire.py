"""Section 12 on the request path: names from the wire or a handler never reach the protocol
unchecked, a passed-through error is capped, and one hostile answer stops nobody."""

from __future__ import annotations

from runtime.core import protocol as p


def test_bounded_code_keeps_ours_and_folds_the_rest_into_other() -> None:
    assert [p.bounded_code(c) for c in (p.HANDLER_ERROR, p.TIMEOUT, p.STEP_FAILED)] == [
        p.HANDLER_ERROR, p.TIMEOUT, p.STEP_FAILED]
    assert {p.bounded_code(c) for c in ("x" * 1_000_000, "custom_code", "", "ok")} == {"other"}

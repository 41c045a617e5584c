"""Failed requests in the log: the first one, then counts, less and less often.

A flood of bad requests must not become a flood of log lines, nor must an agent that
keeps failing (a flaky dependency that a pipeline's retries already absorb) log a line
every second: past the first line, failures of that code are only counted, and the
count is logged when the window is over; each window while the failures go on is twice
the last, up to a minute. A minute without a failure starts again at a second. A
`handler_error` also logs its traceback at debug level.
"""

from __future__ import annotations

import asyncio
import logging
import time

from runtime.core import protocol as p
from runtime.core.text import shown

WINDOW = 1.0  # seconds between the first two lines of one agent and code
MAX_WINDOW = 60.0  # ... doubling while failures go on, up to this; quiet this long: reset
_MAX_SHOWN = 500  # a logged message is cut here


class FailureLog:
    """Logs one agent's failed requests, rate-limited per error code."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        self._last: dict[str, float] = {}  # code -> when its last line was logged
        self._held: dict[str, int] = {}  # code -> failures counted but not logged since
        self._window: dict[str, float] = {}  # code -> the window now

    def failed(self, error: p.MeshError, exc: BaseException, trace_id: str = "") -> None:
        code = p.bounded_code(error.code)  # codes from elsewhere: one window, not one each
        now = time.monotonic()
        last = self._last.get(code)
        window = self._window.get(code, WINDOW)
        if last is not None and now - last < window:
            held = self._held.get(code, 0)
            self._held[code] = held + 1
            if held == 0:  # the first one held back in this window: report the count after it
                self._report_later(code, last + window - now)
            return
        quiet = last is None or now - last >= MAX_WINDOW
        self._window[code] = WINDOW if quiet else min(2 * window, MAX_WINDOW)
        self._last[code] = now
        # The trace id ends the line (and is a field of a JSON line): the way to the trace.
        self.logger.warning("request %s failed: %s: %s%s", shown(error.request_id, _MAX_SHOWN),
                            shown(error.code, 64), shown(error.message, _MAX_SHOWN),
                            f" (trace {trace_id})" if trace_id else "",
                            extra={"trace_id": trace_id} if trace_id else None)
        if code == p.HANDLER_ERROR and exc is not error and self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("traceback of request %s", shown(error.request_id, _MAX_SHOWN),
                              exc_info=(type(exc), exc, exc.__traceback__))

    def _report_later(self, code: str, delay: float) -> None:
        try:
            asyncio.get_running_loop().call_later(max(delay, 0.0), self._report, code)
        except RuntimeError:  # no loop (a test calling in directly): report at once
            self._report(code)

    def _report(self, code: str) -> None:
        held = self._held.pop(code, 0)
        if held:
            window = self._window.get(code, WINDOW)
            self._last[code] = time.monotonic()
            self._window[code] = min(2 * window, MAX_WINDOW)
            self.logger.warning("%d more requests failed with %s in the last %s", held, code,
                                _span(window))


def _span(seconds: float) -> str:
    if seconds == WINDOW:
        return "second"
    return "minute" if seconds == MAX_WINDOW else f"{seconds:g} seconds"

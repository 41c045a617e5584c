"""Failed requests in the log: each one once, at most a line per agent and code per second.

A flood of bad requests must not become a flood of log lines: past the first line of a
second, failures of that code are only counted, and the count is logged when the second
is over. A `handler_error` also logs its traceback at debug level.
"""

from __future__ import annotations

import asyncio
import logging
import time

from runtime.core import protocol as p
from runtime.core.text import shown

WINDOW = 1.0  # seconds between two lines of one agent and code
_MAX_SHOWN = 500  # a logged message is cut here


class FailureLog:
    """Logs one agent's failed requests, rate-limited per error code."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        self._last: dict[str, float] = {}  # code -> when its last line was logged
        self._held: dict[str, int] = {}  # code -> failures counted but not logged since

    def failed(self, error: p.MeshError, exc: BaseException) -> None:
        code = p.bounded_code(error.code)  # codes from elsewhere: one window, not one each
        now = time.monotonic()
        last = self._last.get(code)
        if last is not None and now - last < WINDOW:
            held = self._held.get(code, 0)
            self._held[code] = held + 1
            if held == 0:  # the first one held back in this second: report the count after it
                self._report_later(code, last + WINDOW - now)
            return
        self._last[code] = now
        self.logger.warning("request %s failed: %s: %s", shown(error.request_id, _MAX_SHOWN),
                            shown(error.code, 64), shown(error.message, _MAX_SHOWN))
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
            self._last[code] = time.monotonic()
            self.logger.warning("%d more requests failed with %s in the last second", held, code)

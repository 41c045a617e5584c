"""A pytest plugin: the run fails if a process it started outlives it.

pytest becomes a child subreaper (Linux), so a process whose parent died (an `up`'s
worker after `kill -9` of the `up`, a server started in its own session) is given to
pytest instead of init, and is still found among its descendants at the end. What is
left there after the suite, once a few seconds have passed, is named with its command
line, killed, and fails the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from runtime.core.lifeline import become_subreaper
from tests.helpers import command_line, descendants, running

GRACE_SECONDS = 5.0  # processes that are ending get this long


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_ARMED] = become_subreaper()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not session.config.stash.get(_ARMED, False):
        return
    left = _still_running(GRACE_SECONDS)
    _reap()
    if not left:
        return
    lines = [f"  pid {pid}: {command}" for pid, command in left.items()]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _reap()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = f"{len(left)} process(es) the suite started outlived it (now killed):"
    if reporter is not None:
        reporter.write_line(message, red=True)
        for line in lines:
            reporter.write_line(line, red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _still_running(grace: float) -> dict[int, str]:
    deadline = time.monotonic() + grace
    while True:
        _reap()
        left = {pid: command_line(pid) for pid in descendants(os.getpid()) if running(pid)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _reap() -> None:
    """Collect the exit status of orphans given to pytest, so they leave no zombies."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


_ARMED = pytest.StashKey[bool]()

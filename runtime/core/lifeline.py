"""Child processes that end with the process that started them (Linux: the parent-death
signal), and process groups that end whole.

`kill -9` of `up` gives it no chance to stop anything: what it started must notice by
itself. On Linux a child asks the kernel, before it runs anything, for a signal when its
parent dies (prctl PR_SET_PDEATHSIG); elsewhere these helpers do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _bind() -> tuple[Any, Any]:
    if not sys.platform.startswith("linux"):
        return None, None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl, default = libc.prctl, libc.signal
    except (OSError, AttributeError):
        return None, None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    default.argtypes = [ctypes.c_int, ctypes.c_void_p]
    default.restype = ctypes.c_void_p
    return prctl, default


# Bound once, in the parent: between fork and exec the child may only call them, not load them.
_PRCTL, _SIGNAL = _bind()


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` that has the child get `sig` when this process dies (None where the
    platform has no such thing). The kernel ties the signal to the thread that spawns the
    child: spawn from a thread that lives as long as the child should (the main thread, or
    an event loop's executor)."""
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    reset = _SIGNAL

    def arm() -> None:
        reset(sig, None)  # SIG_DFL: an ignored signal (under `nohup`, say) stays ignored past exec
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def end_group_on(sig: int) -> None:
    """On `sig`, kill this process's whole process group (itself and whatever it forked).

    A worker arms this for its parent-death signal: the processes a handler forked die with
    it. A Python handler runs between bytecodes, so even a worker busy importing ends."""

    def end_group(_sig: int, _frame: object) -> None:
        os.killpg(os.getpgrp(), signal.SIGKILL)

    signal.signal(sig, end_group)


def kill_group(pgid: int) -> None:
    """SIGKILL to every process left in group `pgid` (after its leader exited)."""
    if pgid > 1:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def become_subreaper() -> bool:
    """Orphans among this process's descendants are given to it, not to init, so that it
    can find them (the test suite's check for processes left behind)."""
    return _PRCTL is not None and _PRCTL(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0

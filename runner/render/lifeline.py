"""Helper processes that must not outlive the coordinator, however it dies (SIGKILL included).

Linux sends a chosen signal to a process when its parent dies ("parent-death signal"). The
forkserver asks for it when it starts (it imports `runner.render.forkserver_lifeline` as its
first preload), so it dies with the coordinator; each pool worker asks for it too, so it dies
with the forkserver. The resource tracker then sees its pipe close and exits on its own.
Elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            return
    except (OSError, AttributeError):
        return
    if parent == 1 or os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """Start helper processes inside this: they begin with SIGINT blocked (a signal mask survives
    fork and exec), so a terminal's Ctrl-C, which reaches the whole process group, cannot kill one
    while Python is still starting there (a traceback on the user's terminal). The coordinator
    decides what stops and ends its helpers itself."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

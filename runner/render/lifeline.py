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

"""Render processes that must not outlive the coordinator, however it dies (SIGKILL included).

Linux sends a chosen signal to a process when its parent dies ("parent-death signal"). Two kinds
of process ask for it, through `tie_to_parent`: the forkserver as it starts (it imports
runner.render.forkserver_preload, first in runner.render.pool.PRELOAD), so it dies with the
coordinator; and each pool worker (runner.render.worker.init_worker), so it dies with the
forkserver. The resource tracker then sees its pipe close and exits on its own. Elsewhere than
on Linux the parent-death signal is not asked for.

Importing this module does nothing: the coordinator imports it too (through the worker module).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def tie_to_parent() -> None:
    """This process ignores Ctrl-C and dies when its parent dies. Ctrl-C reaches the whole process
    group, but only the coordinator decides what stops, and it ends its helper processes itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()


def _die_with_parent() -> None:
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

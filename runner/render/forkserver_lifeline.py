"""Imported by the forkserver alone (first in runner.render.pool.PRELOAD): it then dies with the
coordinator that started it. The forkserver must be started from the coordinator's main thread,
since the parent-death signal fires when the thread that started a process ends.

It also ignores Ctrl-C (which a terminal sends to the whole process group; it was blocked from
the start, see pool.prestart): the coordinator decides what stops and ends the forkserver itself."""

import signal

from runner.render.lifeline import die_with_parent

signal.signal(signal.SIGINT, signal.SIG_IGN)
die_with_parent()

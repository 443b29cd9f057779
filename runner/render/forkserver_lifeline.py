"""Imported by the forkserver alone (first in runner.render.pool.PRELOAD): it then dies with the
coordinator that started it. The forkserver must be started from the coordinator's main thread,
since the parent-death signal fires when the thread that started a process ends."""

from runner.render.lifeline import die_with_parent

die_with_parent()

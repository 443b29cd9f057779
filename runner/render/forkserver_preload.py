"""Importing this module ties the process that imports it to its parent (it ignores Ctrl-C and
dies with it; see runner.render.lifeline). Only the forkserver imports it: first in its preload
list (runner.render.pool.PRELOAD), so it dies with the coordinator that started it.

A module of its own, with nothing else in it, because a forkserver runs code only by importing
the modules its preload list names, and this import's effect must happen nowhere else: the
coordinator imports runner.render.lifeline (through the worker module) and keeps its Ctrl-C.

The forkserver must be started from the coordinator's main thread (runner.render.pool.prestart),
since the parent-death signal fires when the thread that started a process ends; Ctrl-C, which a
terminal sends to the whole process group, is blocked from its start until this import ignores it.
"""

from runner.render.lifeline import tie_to_parent

tie_to_parent()

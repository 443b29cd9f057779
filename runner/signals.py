"""SIGINT and SIGTERM, from the first instant of the process to the report on disk.

`python -m runner` holds both signals before it imports anything heavy: one that arrives while
Python imports matplotlib or the server starts is noted, not raised, and the run acts on it
as soon as it can (a report listing every chart asked for, exit 130). Commands other than
`run` release them at once, so Ctrl-C works there as usual.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_held: list[str] = []


def _note(signum: int, _frame: Any) -> None:
    _held.append(signal.Signals(signum).name)


def hold() -> None:
    for sig in _SIGNALS:
        signal.signal(sig, _note)


def release() -> None:
    """The usual behaviour back; a signal held so far is delivered now."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _held:
        signal.raise_signal(signal.Signals[_held[0]])


def ignore() -> None:
    """For the last moments, once the report is on disk: a signal now must not change the exit
    code the report gives (Python restores the default handlers while it finalizes, but leaves
    ignored signals ignored)."""
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextmanager
def stop_on_signals(stop: Callable[[], None], received: list[str]) -> Iterator[None]:
    """SIGINT/SIGTERM ask the run to stop instead of raising in random places; one held since
    the process started asks it at once.

    The handler logs nothing: it runs between two bytecodes of the main thread, which may be
    inside a log call, and loguru's handlers are not re-entrant (it would print a traceback)."""
    def handler(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in _SIGNALS}
    if _held:
        received.extend(_held)
        _held.clear()
        stop()
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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

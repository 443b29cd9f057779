"""The render function on a Dask worker: the same rendering as a local pool worker.

Start workers with `--preload runner.render.dask_worker` and matplotlib is imported and styled
once, when the worker starts, not at its first chart; the canvas reuse of the local pool then
applies chart after chart. matplotlib is not thread-safe: a worker started with more than one
thread renders one chart at a time anyway (the lock below), so `--nthreads 1` is the setting
that uses the cores (one worker process per core).
"""

from __future__ import annotations

import threading
from dataclasses import replace

from runner.records import BuiltDeck, RenderTask
from runner.render import worker
from runner.render.backend import Output, RenderFunction, Task

_lock = threading.Lock()
_styled = False


def run_task(task: Task, render: RenderFunction | None = None) -> Output:
    """One chart's PNG or one deck, built on this Dask worker; `render` replaces the chart
    render function, as with the local pool (the tests inject faults with it)."""
    global _styled
    with _lock:
        if not _styled:
            worker.init_worker()
            _styled = True
        if isinstance(task, RenderTask):
            return replace((render or worker.render)(task), worker=_address())
        from runner.decks.build import build_deck

        built: BuiltDeck = build_deck(task)
        return built


def _address() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:  # called outside a Dask worker (a test calling it directly)
        return ""


def dask_setup(_worker: object) -> None:
    """Run by `dask worker --preload runner.render.dask_worker` as the worker starts."""
    global _styled
    with _lock:
        worker.init_worker()
        _styled = True


"""The render function on a Dask worker: the same rendering as a local pool worker.

Start workers with `--preload runner.render.dask_worker` and matplotlib is imported and styled
once, when the worker starts, not at its first chart; the canvas reuse of the local pool then
applies chart after chart. matplotlib is not thread-safe: a worker started with more than one
thread renders one chart at a time anyway (the lock below), so `--nthreads 1` is the setting
that uses the cores (one worker process per core).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import replace

import runner.render.task
from runner.records import RenderedChart, RenderTask
from runner.render import worker
from runner.render.supervisor import Output, RenderFunction, Task

_lock = threading.Lock()
_styled = False


def run_on_dask_worker(task: Task, render: RenderFunction | None = None) -> Output:
    """One chart's PNG or one deck, built on this Dask worker by runner.render.task.run_task, one
    at a time; `render` replaces the chart render function, as with the local pool (the tests
    inject faults with it)."""
    global _styled
    with _lock:
        if not _styled:
            worker.init_worker()
            _styled = True
        return runner.render.task.run_task(task, functools.partial(_on_this_worker, render or worker.render))


def _on_this_worker(render: RenderFunction, task: RenderTask) -> RenderedChart:
    """The chart, with the address of the worker that drew it: the report counts the workers seen."""
    return replace(render(task), worker=_address())


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

"""One render task, done where a backend runs it: a chart's PNG or a merchant's deck.

The one place that decides "chart or deck?". Every render backend hands its tasks here: the
local pool's worker processes (runner.render.process_backend), the calling thread
(runner.render.inline_backend) and Dask workers (runner.render.dask_worker). A new kind of task
is a branch here and a key in the render cache (runner.cache.entries.task_key).

This module imports no matplotlib: the coordinator only pickles a reference to `run_task`; the
render workers have what it imports preloaded (runner.render.pool.PRELOAD).
"""

from __future__ import annotations

from runner.records import RenderTask
from runner.render.supervisor import Output, RenderFunction, Task


def run_task(task: Task, render: RenderFunction | None = None) -> Output:
    """The task's output, built in this process. `render` replaces the chart render function
    (the tests inject faults with it); decks are always built by runner.decks.build."""
    from runner.render import worker

    worker.announce(task)  # first: a crash or a hang from here on is pinned on this task
    if isinstance(task, RenderTask):
        return (render or worker.render)(task)
    from runner.decks.build import build_deck

    return build_deck(task)

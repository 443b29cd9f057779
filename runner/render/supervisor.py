"""What the render stage hands back: the outcome of settling a render, and its interface.

The coordinator talks to any render supervisor (worker processes in runner.render.process_backend,
in-process in runner.render.inline_backend, a Dask cluster in runner.render.dask_backend) through
`RenderSupervisor` and these records only. Every backend hands each task to the same function,
runner.render.task.run_task, wherever it runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from runner.errors import ChartError, ErrorType, described
from runner.records import BuiltDeck, DeckTask, RenderedChart, RenderTask

Key = tuple[str, str]  # (merchant, chart id), or (merchant, DECK) for a merchant's deck
DECK = "#deck"  # never a chart id (those start with a letter or digit)
Task = RenderTask | DeckTask
Output = RenderedChart | BuiltDeck
RenderFunction = Callable[[RenderTask], RenderedChart]
OnDone = Callable[["Future[Output]"], None]

# Tasks a backend holds at once, per worker: one rendering and one waiting there, so no worker idles
# through a round trip; not more, so a replaced pool has little left to finish, a stop has little to
# cancel, and a task queued on a Dask scheduler does not spend its render timeout waiting.
TASKS_PER_WORKER = 2


def key_of(task: Task) -> Key:
    return task.job.key if isinstance(task, RenderTask) else (task.merchant, DECK)


@dataclass(frozen=True)
class Rendered:
    key: Key
    chart: Output


@dataclass(frozen=True)
class RenderFailed:
    key: Key
    error_type: ErrorType
    message: str


@dataclass(frozen=True)
class GoAgain:
    """The chart lost its place (its pool broke beside it): render it again, first in line."""

    key: Key


Settled = Rendered | RenderFailed | GoAgain | None  # None: nothing left to do for this future


def settle_result(key: Key, future: Future[Output]) -> Settled:
    """A render that ended on its own: its PNG, or why there is none."""
    error = future.exception()
    if error is None:
        return Rendered(key, future.result())
    if isinstance(error, ChartError):
        return RenderFailed(key, error.error_type, error.message)
    failure = ErrorType.DECK_ERROR if key[1] == DECK else ErrorType.RENDER_ERROR
    return RenderFailed(key, failure, described(error))


class RenderSupervisor(Protocol):
    @property
    def workers(self) -> int: ...
    @property
    def start_method(self) -> str: ...
    @property
    def restarts(self) -> int: ...  # pools rebuilt after a worker died
    @property
    def recycles(self) -> int: ...  # pools replaced to keep worker memory flat

    def start(self, on_ready: Callable[[], None]) -> None: ...
    def capacity(self) -> int: ...  # how many more tasks it takes now
    def in_flight(self) -> int: ...
    def rendering(self) -> int: ...  # tasks a worker is on now (never more than workers)
    def submit(self, task: Task, on_done: OnDone) -> None: ...
    def settle(self, future: Future[Output]) -> Settled: ...
    def tick(self) -> list[RenderFailed]: ...  # renders that ran past their timeout, now ended
    def cancel_pending(self) -> None: ...
    def close(self, terminate: bool) -> None: ...

"""In-process rendering: the render supervisor's interface with no processes (the sequential mode)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future

from runner.render.supervisor import (
    Key,
    OnDone,
    Output,
    RenderFailed,
    RenderFunction,
    Settled,
    Task,
    key_of,
    settle_result,
)
from runner.render.task import run_task


class InlineSupervisor:
    """Renders each task in the calling thread when it is submitted: the sequential mode."""

    workers = 1
    start_method = "inline"
    restarts = recycles = 0

    def __init__(self, render: RenderFunction | None = None) -> None:
        self._render = render  # None: runner.render.worker.render
        self._done: dict[Future[Output], Key] = {}

    def start(self, on_ready: Callable[[], None]) -> None:
        from runner.render.worker import init_worker

        init_worker()
        on_ready()

    def capacity(self) -> int:
        return 0 if self._done else 1

    def in_flight(self) -> int:
        return len(self._done)

    def rendering(self) -> int:
        return 0  # a render runs inside submit(), while nothing else is looked at

    def submit(self, task: Task, on_done: OnDone) -> None:
        future: Future[Output] = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(run_task(task, self._render))
        except Exception as exc:  # noqa: BLE001 - handed over like a pool would
            future.set_exception(exc)
        self._done[future] = key_of(task)
        on_done(future)

    def settle(self, future: Future[Output]) -> Settled:
        key = self._done.pop(future, None)
        return None if key is None else settle_result(key, future)

    def tick(self) -> list[RenderFailed]:
        return []

    def cancel_pending(self) -> None:
        pass

    def close(self, terminate: bool) -> None:
        pass

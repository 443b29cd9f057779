"""The render supervisor: the one owner of the render workers' lifecycle.

The coordinator hands it render tasks and settles each finished future through it; the
supervisor alone knows about processes. It starts the pool without blocking the caller,
replaces it every `render_worker_max_charts` charts per worker (memory stays flat), rebuilds
it after a worker dies and decides whom to blame, ends the worker of a render that hangs,
and stops and releases every worker it started.

Each pool it starts is a `_Generation` with a named state. A pool is replaced, never
repaired: a dead worker breaks a ProcessPoolExecutor for good (every pending future fails
with BrokenProcessPool), and `max_tasks_per_child` hangs on Python 3.11 (cpython#115634).

In-process rendering (runner.render.inline_backend) has the same interface and no processes;
runner.render.backends picks one from the settings.
"""

from __future__ import annotations

import enum
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from loguru import logger

from runner.config import RunnerConfig
from runner.errors import ChartError, ErrorType, detail
from runner.render import pool
from runner.render.supervisor import (
    TASKS_PER_WORKER,
    GoAgain,
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

MAX_RENDER_CRASHES = 2  # a chart that kills its worker this often is failed, not retried

# -- worker processes ------------------------------------------------------------------------------


class PoolState(enum.Enum):
    RUNNING = "running"  # the current pool: takes new tasks
    DRAINING = "draining"  # replaced (recycled): finishes what it has, then its workers exit
    BROKEN = "broken"  # a worker died: every unfinished task of it failed
    ENDED = "ended"  # every worker has exited and its handles are released


@dataclass
class _Generation:
    executor: ProcessPoolExecutor
    processes: dict[int, Any]  # pid -> Process; the pool forgets workers as they exit, we need them after
    manager: threading.Thread | None  # the pool's own thread, which joins the workers as they exit
    state: PoolState = PoolState.RUNNING
    submitted: int = 0
    crashed: frozenset[int] = frozenset()  # pids that died on their own (known once BROKEN)

    def all_exited(self) -> bool:
        """Every worker has exited and the pool's thread is done with them."""
        return (all(process.exitcode is not None for process in self.processes.values())
                and (self.manager is None or not self.manager.is_alive()))


@dataclass
class _InFlight:
    key: Key
    generation: _Generation
    pid: int | None = None  # the worker on it, once the worker said so
    began: float | None = None  # monotonic time the worker began it
    timed_out: bool = False


class ProcessSupervisor:
    """Render tasks in a pool of worker processes, replaced as needed (see the module's doc)."""

    start_method = pool.START_METHOD

    def __init__(self, config: RunnerConfig, render: RenderFunction | None = None) -> None:
        self.workers = pool.worker_count(config.max_concurrent_charts, config.oversubscribe_workers)
        self.restarts = self.recycles = 0
        self._render = render  # None: the workers' own (runner.render.worker.render)
        self._max_charts = config.render_worker_max_charts
        self._timeout = config.render_timeout_seconds
        self._started_reader, self._started_writer = pool.started_channel()
        self._generations: list[_Generation] = []
        self._current: _Generation | None = None
        self._in_flight: dict[Future[Output], _InFlight] = {}
        self._crashes: Counter[Key] = Counter()  # crashes blamed on each chart
        self._starter: threading.Thread | None = None
        self._start_error: str | None = None
        self._unstarted: dict[Future[Output], Key] = {}  # failed at once: the pool never started
        self._closing = False
        self._closed = False  # closed once: the coordinator closes it, and the run again at its end

    # -- starting ------------------------------------------------------------------------------
    def start(self, on_ready: Callable[[], None]) -> None:
        """Start the first pool in a thread: its workers fork from the forkserver, which may still
        be importing matplotlib (~0.5 s), and the caller's loop must not wait for that."""
        pool.prestart()  # from this (the main) thread: see runner.render.forkserver_preload

        def first() -> None:
            try:
                self._current = self._new_generation()
            except Exception as exc:  # noqa: BLE001 - every chart then fails with this reason
                self._start_error = detail(f"render workers could not start: {type(exc).__name__}: {exc}")
                logger.error(self._start_error)
            on_ready()

        self._starter = threading.Thread(target=first, name="render-pool-start", daemon=True)
        self._starter.start()

    def _new_generation(self) -> _Generation:
        executor = pool.start_process_pool(self.workers, self._started_writer)
        generation = _Generation(executor, pool.worker_processes(executor), pool.manager_thread(executor))
        self._generations.append(generation)
        return generation

    def _replace_current(self) -> None:
        self._current = self._new_generation()

    # -- tasks ---------------------------------------------------------------------------------
    def capacity(self) -> int:
        if self._start_error is not None and not self._closing:
            return 1  # each chart is failed as it is submitted
        if self._current is None or self._closing:
            return 0
        return max(0, self.workers * TASKS_PER_WORKER - len(self._in_flight))

    def in_flight(self) -> int:
        return len(self._in_flight)

    def rendering(self) -> int:
        return min(self.workers, sum(1 for entry in self._in_flight.values() if entry.began is not None))

    def submit(self, task: Task, on_done: OnDone) -> None:
        if self._start_error is not None:
            failed: Future[Output] = Future()
            failed.set_exception(ChartError(ErrorType.RENDER_ERROR, self._start_error))
            self._unstarted[failed] = key_of(task)
            on_done(failed)
            return
        assert self._current is not None, "submit() before the pool is ready"
        if self._current.submitted >= self._max_charts * self.workers:
            self._recycle()
        generation = self._current
        try:
            future = generation.executor.submit(run_task, task, self._render)
        except BrokenProcessPool:  # a worker died since the last look: replace the pool, then submit
            self._broke(generation)
            generation = self._current
            future = generation.executor.submit(run_task, task, self._render)
        generation.submitted += 1
        self._in_flight[future] = _InFlight(key_of(task), generation)
        future.add_done_callback(on_done)

    def _recycle(self) -> None:
        """Replace the pool after `render_worker_max_charts` charts per worker: the old one
        finishes what it was given, then its workers exit."""
        assert self._current is not None
        self._current.state = PoolState.DRAINING
        self._current.executor.shutdown(wait=False)
        self._replace_current()
        self.recycles += 1

    def settle(self, future: Future[Output]) -> Settled:
        if future in self._unstarted:
            return settle_result(self._unstarted.pop(future), future)
        self._read_began()  # first: a worker that died said which chart it was on
        entry = self._in_flight.pop(future, None)
        if entry is None or future.cancelled():
            return None  # cancelled only when stopping: the chart is cancelled with the rest
        error = future.exception()
        broken = isinstance(error, BrokenProcessPool)
        if broken:
            self._broke(entry.generation)
        if entry.timed_out:
            return None  # failed when its worker was ended
        if not broken:
            return settle_result(entry.key, future)
        # Only the chart whose own worker died is to blame; charts that were queued or running
        # beside it lost nothing but time and go again.
        if entry.pid is not None and entry.pid in entry.generation.crashed:
            self._crashes[entry.key] += 1
            crashes = self._crashes[entry.key]
            logger.warning("{} {}: its render worker died (crash {} of {})", *entry.key, crashes, MAX_RENDER_CRASHES)
            if crashes >= MAX_RENDER_CRASHES:
                return RenderFailed(entry.key, ErrorType.WORKER_CRASHED,
                                    f"{entry.key[1]}: render worker died {crashes} times on this chart")
        return GoAgain(entry.key)

    def _broke(self, generation: _Generation) -> None:
        """A worker of `generation` died: learn which (once), and replace the pool if it was the current one."""
        if generation.state in (PoolState.RUNNING, PoolState.DRAINING):  # not yet seen broken
            generation.state = PoolState.BROKEN
            generation.executor.shutdown(wait=True, cancel_futures=True)  # joins workers: exit codes known
            generation.crashed = frozenset(pool.crashed_pids(pool.exit_codes(generation.processes)))
            if generation is self._current and not self._closing:
                self._replace_current()
                self.restarts += 1
                logger.warning("a render worker died; started a new pool (restart {})", self.restarts)

    def _read_began(self) -> None:
        """Workers say (pid, chart key) as they begin a chart; note it on that chart's entry."""
        where = {entry.key: entry for entry in self._in_flight.values()}
        while True:
            try:
                if not self._started_reader.poll():
                    return
                pid, key = self._started_reader.recv()
            except (EOFError, OSError):
                return  # the channel is closed: no worker can say anything any more
            entry = where.get(tuple(key))
            if entry is not None and pid in entry.generation.processes:
                entry.pid, entry.began = pid, time.monotonic()

    # -- the periodic look -------------------------------------------------------------------------
    def tick(self) -> list[RenderFailed]:
        """End the worker of each render past its timeout (the pool then breaks and is replaced),
        and release pools whose workers have all exited."""
        self._release_ended()
        self._read_began()
        now, failed = time.monotonic(), []
        for entry in self._in_flight.values():
            if entry.timed_out or entry.began is None or entry.pid is None or now - entry.began <= self._timeout:
                continue
            entry.timed_out = True
            try:
                os.kill(entry.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            message = (f"{entry.key[1]}: render did not finish within {self._timeout:g}s; "
                       f"its worker (pid {entry.pid}) was stopped")
            logger.warning("{} {}", entry.key[0], message)
            failed.append(RenderFailed(entry.key, ErrorType.TIMEOUT, message))
        return failed

    def _release_ended(self, every: bool = False) -> None:
        """Close the handles of replaced pools whose workers have all exited: each worker holds
        two pipes, and a long run replaces its pool many times."""
        for generation in list(self._generations):
            if (generation is self._current and not every) or not generation.all_exited():
                continue
            generation.executor.shutdown(wait=True)
            pool.close_processes(generation.processes)
            generation.state = PoolState.ENDED
            self._generations.remove(generation)

    # -- stopping ------------------------------------------------------------------------------------
    def cancel_pending(self) -> None:
        """Cancel what no worker has begun; running renders may still finish."""
        self._closing = True
        for future in list(self._in_flight):
            future.cancel()

    def close(self, terminate: bool) -> None:
        """End every worker: at once with `terminate` (a stop), else after the work they have."""
        if self._closed:
            return
        self._closed = self._closing = True
        if self._starter is not None:
            self._starter.join()
        for generation in list(self._generations):
            if terminate:
                pool.stop_workers(generation.processes)
            generation.executor.shutdown(wait=True, cancel_futures=True)
        for generation in self._generations:
            # A replaced pool's workers may still be finishing their last chart: wait for them, so
            # none outlives the run (its executor's shutdown() waited only the first time).
            pool.stop_workers(generation.processes, grace=self._timeout)
            # A replaced pool was shut down without waiting, and that forgot its manager thread: wait
            # for it here, or its result pipe (two descriptors) outlives the run while it winds down.
            if generation.manager is not None:
                generation.manager.join(timeout=5)
        self._release_ended(every=True)
        self._started_reader.close()
        self._started_writer.close()

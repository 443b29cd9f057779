"""The executors that run render tasks: a process pool, or in-process one by one."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

from loguru import logger

# What every worker needs, imported once in the forkserver and inherited by each worker.
PRELOAD = ["matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg", "runner.render.worker"]
START_METHOD = "forkserver"  # never fork: the coordinator runs retrieval threads


class InlineExecutor(Executor):
    """Runs each task at submit time in the calling thread: the sequential mode."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the future like a pool would
            future.set_exception(exc)
        return future


def worker_count(requested: int, oversubscribe: bool) -> int:
    cpus = os.cpu_count() or 1
    if requested > cpus and not oversubscribe:
        logger.info("max_concurrent_charts={} capped at {} CPUs (set oversubscribe_workers to allow more)",
                    requested, cpus)
        return cpus
    return requested


def start_process_pool(workers: int) -> ProcessPoolExecutor:
    from runner.render.worker import init_worker

    context = multiprocessing.get_context(START_METHOD)
    context.set_forkserver_preload(PRELOAD)
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker)


def start_inline() -> InlineExecutor:
    from runner.render.worker import init_worker

    init_worker()
    return InlineExecutor()

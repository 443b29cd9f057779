"""Process-level helpers of the render stage: the forkserver, one pool's workers, ending them.

The render supervisor (runner.render.process_backend) decides when; these do.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from loguru import logger

# What every worker needs, imported once in the forkserver and inherited by each worker: the pool's
# worker loop, matplotlib, and what runs a task. First the module whose import ties the forkserver to
# the coordinator: it dies with it however that dies.
PRELOAD = ["runner.render.forkserver_preload", "concurrent.futures.process", "matplotlib", "matplotlib.figure",
           "matplotlib.backends.backend_agg", "runner.render.worker", "runner.render.task", "runner.decks.build",
           "runner.decks.powerpoint", "runner.decks.font_warmup"]
START_METHOD = "forkserver"  # never fork: the coordinator runs retrieval threads


def worker_count(requested: int, oversubscribe: bool) -> int:
    cpus = os.cpu_count() or 1
    if requested > cpus and not oversubscribe:
        logger.info("max_concurrent_charts={} capped at {} CPUs (set oversubscribe_workers to allow more)",
                    requested, cpus)
        return cpus
    return requested


def _context() -> Any:
    context = multiprocessing.get_context(START_METHOD)
    context.set_forkserver_preload(PRELOAD)
    return context


def prestart() -> None:
    """Start the forkserver now, without waiting: it imports matplotlib while the run starts its
    server and sessions, and the pool's workers fork from it later at once."""
    from multiprocessing import forkserver, resource_tracker

    from runner.signals import sigint_blocked

    _context()  # its preload list
    # The tracker first: it blocks SIGINT around its own start but then unblocks it, which would
    # undo our block before the forkserver starts.
    resource_tracker.ensure_running()
    with sigint_blocked():
        forkserver.ensure_running()


def started_channel() -> tuple[Any, Any]:
    """(reader, writer) of a pipe where workers say which chart they begin, so a crash or a
    hang is pinned on its own chart. A pipe, not a queue: a small message is one atomic
    write with no lock, so a worker killed at any moment cannot leave it locked or torn."""
    return _context().Pipe(duplex=False)


def start_process_pool(workers: int, started: Any = None) -> ProcessPoolExecutor:
    """A pool with its workers started now (while retrieval runs), not when the first chart comes."""
    from runner.render.worker import init_worker, ready

    executor = ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=init_worker,
                                   initargs=(started,))
    for _ in range(workers):
        executor.submit(ready)
    return executor


def worker_processes(executor: ProcessPoolExecutor) -> dict[int, Any]:
    """pid -> Process of a started pool. A copy: the pool forgets workers as they exit, and we
    need them afterwards, for their exit codes and to release their pipes."""
    return dict(executor._processes)


def manager_thread(executor: ProcessPoolExecutor) -> threading.Thread | None:
    """The pool's manager thread, which joins the workers once they exit: their handles may be
    closed only after it has ended. Taken at the start: shutdown(wait=False) forgets it."""
    thread: threading.Thread | None = getattr(executor, "_executor_manager_thread", None)  # typeshed mistypes it
    return thread


def exit_codes(processes: dict[int, Any]) -> dict[int, int | None]:
    return {pid: process.exitcode for pid, process in processes.items()}


def crashed_pids(codes: dict[int, int | None]) -> set[int]:
    """Workers of a shut-down pool that died on their own (not ended by the pool itself)."""
    return {pid for pid, code in codes.items() if code is not None and code not in (0, -signal.SIGTERM)}


def close_processes(processes: dict[int, Any]) -> None:
    """Release the handles (two pipes each) of workers that have ended."""
    for process in processes.values():
        process.close()


def stop_workers(processes: dict[int, Any], grace: float = 0.0) -> None:
    """Give workers `grace` seconds to exit on their own, then end the rest (a running render
    cannot be cancelled any other way)."""
    deadline = time.monotonic() + grace
    for process in processes.values():
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes.values():
        if process.is_alive():
            process.terminate()
    for process in processes.values():
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join()

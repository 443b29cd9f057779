"""A Dask cluster on this machine, for trying `--executor dask`, the tests and the benchmark:
a scheduler and single-thread workers (each under its nanny) started with the `dask` CLI as
separate processes, exactly as on real machines, and all of them ended on exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class LocalCluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    nannies: tuple[subprocess.Popen[bytes], ...]


def _scheduler_address(scheduler_file: Path, scheduler: subprocess.Popen[bytes], timeout: float) -> str:
    """The address the scheduler bound (it picks its own free port: a port picked here and
    handed over can be taken meanwhile, as its own HTTP server once did), from its scheduler file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and scheduler.poll() is None:
        try:
            return str(json.loads(scheduler_file.read_text())["address"])
        except (OSError, ValueError, KeyError):  # not written yet, or half written
            time.sleep(0.05)
    raise RuntimeError(f"the Dask scheduler did not start (see {scheduler_file.parent / 'dask-0.log'})")


def wait_for_workers(address: str, count: int, timeout: float = START_TIMEOUT_SECONDS) -> None:
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(count, timeout=timeout)


@contextmanager
def local_dask_cluster(logs: Path, workers: int = 2, env: Mapping[str, str] | None = None) -> Iterator[LocalCluster]:
    """Yields once every worker has joined; `env` is added to every process's environment."""
    # The workers' statistical profiler samples every thread every 10 ms: CPU the charts need.
    # A worker is given only the task it runs (saturation 1.0; Dask's default 1.1 queues a second on
    # a one-thread worker): when a render kills its worker, no innocent chart queued there is counted
    # as a suspect too (seen under load: KilledWorker for a chart that never crashed anything).
    environment = {**os.environ, "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
                   "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0", **(env or {})}
    dask = [sys.executable, "-m", "dask"]
    scheduler_file = logs / "dask-scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    processes: list[subprocess.Popen[bytes]] = []

    def start(number: int, command: list[str]) -> None:
        with open(logs / f"dask-{number}.log", "w") as log:
            processes.append(subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=log,
                                              start_new_session=True))

    try:
        start(0, [*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                  "--scheduler-file", str(scheduler_file)])
        address = _scheduler_address(scheduler_file, processes[0], START_TIMEOUT_SECONDS)
        for number in range(1, workers + 1):
            start(number, [*dask, "worker", address, "--nthreads", "1", "--no-dashboard", "--memory-limit", "0",
                           "--preload", "runner.render.dask_worker"])
        wait_for_workers(address, workers)
        yield LocalCluster(address, processes[0], tuple(processes[1:]))
    finally:
        for proc in processes:  # each in its own group: the nanny's worker goes with it
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

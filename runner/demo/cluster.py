"""A Dask cluster on this machine, for trying `--executor dask`, the tests and the benchmark:
a scheduler and single-thread workers (each under its nanny) started with the `dask` CLI as
separate processes, exactly as on real machines, and all of them ended on exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class LocalCluster:
    address: str
    nannies: tuple[subprocess.Popen[bytes], ...]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_workers(address: str, count: int, timeout: float = START_TIMEOUT_SECONDS) -> None:
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(count, timeout=timeout)


@contextmanager
def local_dask_cluster(logs: Path, workers: int = 2, env: Mapping[str, str] | None = None) -> Iterator[LocalCluster]:
    """Yields once every worker has joined; `env` is added to every process's environment."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    # The workers' statistical profiler samples every thread every 10 ms: CPU the charts need.
    environment = {**os.environ, "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False", **(env or {})}
    dask = [sys.executable, "-m", "dask"]
    commands = [[*dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"]]
    commands += [[*dask, "worker", address, "--nthreads", "1", "--no-dashboard", "--memory-limit", "0",
                  "--preload", "runner.render.dask_worker"]] * workers
    processes = []
    try:
        for number, command in enumerate(commands):
            with open(logs / f"dask-{number}.log", "w") as log:
                processes.append(subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=log,
                                                  start_new_session=True))
        wait_for_workers(address, workers)
        yield LocalCluster(address, tuple(processes[1:]))
    finally:
        for proc in processes:  # each in its own group: the nanny's worker goes with it
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

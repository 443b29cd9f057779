"""Where a run renders: the one place that picks the render backend from the settings.

A backend is a module implementing runner.render.supervisor.RenderSupervisor: local worker processes
(process_backend), in-process (inline_backend), a Dask cluster (dask_backend). Adding one is that
module plus its entry in BACKENDS, and its name among the executor setting's choices in
runner/config.py (tests/test_one_place.py fails while the two differ).

run.py calls `render_backend` once the settings are checked and before it makes the run folder: a
backend that reaches a cluster connects then, so one that cannot be reached stops the run before
any work. It prestarts the backend once the folder exists, hands its supervisor to the coordinator,
and closes it at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runner.config import RunnerConfig
from runner.errors import UsageError
from runner.render import pool
from runner.render.dask_backend import DaskSupervisor, check_dask_installed
from runner.render.inline_backend import InlineSupervisor
from runner.render.process_backend import ProcessSupervisor
from runner.render.supervisor import RenderFunction, RenderSupervisor

MakeSupervisor = Callable[[RunnerConfig, RenderFunction | None], RenderSupervisor]


@dataclass(frozen=True)
class Backend:
    """How a backend's supervisor is made, and when."""

    make: MakeSupervisor  # `render` replaces the worker-side render function (the tests inject faults)
    # Made before the run folder: it connects to a cluster, which may not answer (ExecutorUnavailable).
    early: bool = False
    # Begun once the run folder exists, so it is ready by the first chart: the process pool's
    # forkserver imports matplotlib while the run starts its server and sessions.
    prestart: Callable[[], None] | None = None


def _dask_cluster(config: RunnerConfig, render: RenderFunction | None) -> RenderSupervisor:
    check_dask_installed()
    if not config.dask_scheduler:
        raise UsageError("--executor dask needs --dask-scheduler ADDRESS (such as tcp://10.0.0.5:8786)")
    return DaskSupervisor(config, render)


def _in_process(config: RunnerConfig, render: RenderFunction | None) -> RenderSupervisor:
    return InlineSupervisor(render)


BACKENDS: dict[str, Backend] = {
    "processes": Backend(ProcessSupervisor, prestart=pool.prestart),
    "inline": Backend(_in_process),
    "dask": Backend(_dask_cluster, early=True),
}


def backend_name(config: RunnerConfig) -> str:
    """The executor setting names the backend; `local` is worker processes, or in-process when
    concurrent chart generation is off."""
    if config.executor == "local":
        return "processes" if config.enable_concurrent_chart_generation else "inline"
    return config.executor


class RenderBackend:
    """The backend a run renders with, from before its run folder to its close."""

    def __init__(self, config: RunnerConfig, render: RenderFunction | None = None) -> None:
        self.name = backend_name(config)
        self._backend = BACKENDS[self.name]
        self._config = config
        self._render = render
        self._supervisor = self._backend.make(config, render) if self._backend.early else None

    def prestart(self) -> None:
        """Begin what the backend needs before its first task, without waiting for it."""
        if self._backend.prestart is not None:
            self._backend.prestart()

    def supervisor(self) -> RenderSupervisor:
        """The supervisor the coordinator renders with: made now, unless it was made early."""
        if self._supervisor is None:
            self._supervisor = self._backend.make(self._config, self._render)
        return self._supervisor

    def close(self) -> None:
        """End what it holds, at once: a cluster the coordinator never got, or (again, which is
        harmless) the supervisor the coordinator closed."""
        if self._supervisor is not None:
            self._supervisor.close(True)

    def figures(self) -> dict[str, Any]:
        """The report's metrics.render figures of where the run rendered."""
        cluster = self._supervisor if isinstance(self._supervisor, DaskSupervisor) else None
        return {"executor": self._config.executor, "scheduler": cluster.address if cluster else None,
                "dask_workers_seen": len(cluster.workers_seen) if cluster else None}


def render_backend(config: RunnerConfig, render: RenderFunction | None = None) -> RenderBackend:
    """The render backend the settings ask for. Call it before making the run folder: a Dask
    cluster is reached now, and a bad scheduler address (UsageError) or one that cannot be reached
    (ExecutorUnavailable) ends the run before any work."""
    return RenderBackend(config, render)

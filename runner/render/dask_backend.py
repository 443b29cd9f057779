"""Rendering on a Dask cluster (`--executor dask`): the render supervisor for many machines.

Render and deck tasks go to `distributed.Client(address)` as the same frozen dataclasses the
local pool takes, and come back as PNG or document bytes that the coordinator writes; retrieval
stays in local threads, since MCP sessions are live connections. The promises are the local
pool's: a worker that dies mid-render is Dask's to reschedule, and a task that kills workers
again and again (Dask's KilledWorker) fails alone as `worker_crashed`; a render past
`render_timeout_seconds` is a `timeout` (Dask cannot stop a running task: its worker thread
finishes it and the result is dropped); a scheduler that goes away fails what is unfinished.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Any

from loguru import logger

from runner.config import RunnerConfig
from runner.errors import ChartError, ErrorType, ExecutorUnavailable, detail, one_line
from runner.records import RenderedChart
from runner.redaction import Secrets, address_credentials, redact_address
from runner.render.supervisor import (
    DECK,
    TASKS_PER_WORKER,
    GoAgain,
    Key,
    OnDone,
    Output,
    Rendered,
    RenderFailed,
    RenderFunction,
    Settled,
    Task,
    key_of,
    settle_result,
)

CONNECT_TIMEOUT_SECONDS = 10.0
LOST_GRACE_SECONDS = 10.0  # how long the client may be reconnecting before the scheduler counts as gone


class _Lost(Exception):
    """A task's result went with its worker: render it again."""


@dataclass
class _Remote:
    key: Key
    future: Any  # distributed.Future; None for a task failed at once
    submitted: float


def check_dask_installed() -> None:
    from runner.errors import UsageError

    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UsageError("--executor dask needs Dask's distributed package: pip install -e '.[dask]'") from None


def check_address(address: str) -> None:
    """A scheduler address Dask can parse, checked before a Client is made: one made from a
    malformed address fails only after its own timeouts, and its finalizer then prints a traceback."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    from runner.errors import UsageError

    problem = None
    if "@" in address.split("://", 1)[-1]:
        problem = "Dask takes no credentials in the address (use its TLS settings)"
    else:
        try:
            scheme, location = parse_address(address)
            if scheme in ("tcp", "tls", "ws", "wss"):
                port = parse_host_port(location)[1]
                if not 0 < int(port) < 65536:
                    problem = f"port {port} is out of range"
        except (ValueError, TypeError) as exc:
            problem = "its port is not a number" if "int()" in str(exc) else one_line(str(exc) or "unreadable", 200)
    if problem is not None:
        hidden = Secrets.of(address_credentials(address))
        raise UsageError(f"--dask-scheduler {hidden(address)!r} is not a scheduler address such as "
                         f"tcp://10.0.0.5:8786: {hidden(problem)}")


class DaskSupervisor:
    start_method = "dask"
    restarts = 0  # Dask replaces its own workers
    recycles = 0

    def __init__(self, config: RunnerConfig, render: RenderFunction | None = None) -> None:
        from distributed import Client

        from runner.logs import route_library_logs

        route_library_logs("distributed")
        address = config.dask_scheduler or ""
        self.address = redact_address(address)
        check_address(address)
        try:
            self._client = Client(address, timeout=CONNECT_TIMEOUT_SECONDS, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ExecutorUnavailable(f"cannot reach the Dask scheduler at {self.address}: "
                                      f"{detail(str(exc) or type(exc).__name__)}") from None
        self._timeout = config.render_timeout_seconds
        self._render = render
        self._in_flight: dict[Future[Output], _Remote] = {}
        self._threads = self._count_threads()
        self._lost_since: float | None = None
        self._gone: str | None = None  # why nothing more can be rendered: the scheduler went away
        self._stopping = False
        self._closed = False
        self.workers_seen: set[str] = set()
        logger.info("render on the Dask cluster at {}: {} worker thread(s)", self.address, self._threads)

    def _count_threads(self) -> int:
        try:
            workers = self._client.scheduler_info().get("workers", {})
        except Exception:  # noqa: BLE001 - a scheduler going away is handled by tick()
            return 0
        return sum(int(w.get("nthreads", 1)) for w in workers.values())

    @property
    def workers(self) -> int:
        return self._threads

    def start(self, on_ready: Any) -> None:
        on_ready()  # nothing to start here: the cluster is there already

    def capacity(self) -> int:
        if self._gone is not None:
            return 1  # each task handed over now fails at once, with the reason
        # Per worker thread, as the local pool holds per worker process (see TASKS_PER_WORKER).
        return TASKS_PER_WORKER * max(1, self._threads) - len(self._in_flight)

    def in_flight(self) -> int:
        return len(self._in_flight)

    def rendering(self) -> int:
        return min(len(self._in_flight), max(1, self._threads))

    def submit(self, task: Task, on_done: OnDone) -> None:
        from runner.render.dask_worker import run_on_dask_worker

        local: Future[Output] = Future()
        if self._gone is not None:
            local.set_exception(ChartError(ErrorType.RENDER_ERROR, self._gone))
            self._in_flight[local] = _Remote(key_of(task), None, time.monotonic())
            on_done(local)
            return
        merchant, what = key_of(task)
        # Dask's dashboard groups tasks by the first word of their name.
        name = f"{'deck' if what == DECK else 'chart'}-{merchant}-{what}-{uuid.uuid4().hex[:8]}"
        remote = self._client.submit(run_on_dask_worker, task, self._render, key=name, pure=False)
        self._in_flight[local] = _Remote(key_of(task), remote, time.monotonic())

        def finished(done: Any) -> None:  # on a Dask client thread
            if local.done():
                return
            try:
                if done.status == "finished":
                    local.set_result(done.result())
                elif done.status == "cancelled":
                    local.set_exception(CancelledError())
                elif done.status == "error":
                    local.set_exception(done.exception())
                else:  # "lost": it ran on a worker that died before its result came back
                    local.set_exception(_Lost(done.status))
            except BaseException as exc:  # noqa: BLE001 - any way it ended is this chart's outcome
                if not local.done():
                    local.set_exception(exc)
            on_done(local)

        remote.add_done_callback(finished)

    def settle(self, future: Future[Output]) -> Settled:
        from distributed import KilledWorker

        remote = self._in_flight.pop(future, None)
        if remote is None:
            return None  # already settled: timed out, or failed when the scheduler went away
        error = future.exception()
        if isinstance(error, CancelledError):
            if self._stopping:
                return None  # cancelled by a stop: the chart is reported cancelled
            if self._client.status in ("closing", "closed"):  # it gave up reconnecting
                self._gone = f"the Dask scheduler at {self.address} went away"
            lost = self._client.status != "running"
            return RenderFailed(remote.key, ErrorType.RENDER_ERROR, self._gone or (
                f"the Dask scheduler at {self.address} stopped answering" if lost
                else f"cancelled by the Dask cluster at {self.address}"))
        if isinstance(error, _Lost):
            remote.future.release()
            return GoAgain(remote.key)
        if isinstance(error, KilledWorker):
            return RenderFailed(remote.key, ErrorType.WORKER_CRASHED,
                                f"its render killed Dask workers repeatedly: {one_line(str(error), 200)}")
        if error is not None and self._client.status != "running":  # whatever it raised, the scheduler is why
            return RenderFailed(remote.key, ErrorType.RENDER_ERROR,
                                self._gone or f"the Dask scheduler at {self.address} stopped answering")
        settled = settle_result(remote.key, future)
        if isinstance(settled, Rendered) and isinstance(settled.chart, RenderedChart) and settled.chart.worker:
            self.workers_seen.add(settled.chart.worker)
        return settled

    def tick(self) -> list[RenderFailed]:
        now = time.monotonic()
        failed = []
        if self._client.status != "running":
            self._lost_since = self._lost_since or now
            if now - self._lost_since > LOST_GRACE_SECONDS:
                self._gone = f"the Dask scheduler at {self.address} went away"
                for local, remote in list(self._in_flight.items()):
                    self._in_flight.pop(local)
                    failed.append(RenderFailed(remote.key, ErrorType.RENDER_ERROR, self._gone))
                return failed
        else:
            self._lost_since = None
            self._threads = self._count_threads() or self._threads
        for local, remote in list(self._in_flight.items()):
            if not local.done() and now - remote.submitted > self._timeout and remote.future is not None:
                self._in_flight.pop(local)
                remote.future.cancel()
                failed.append(RenderFailed(remote.key, ErrorType.TIMEOUT,
                                           f"render did not finish within {self._timeout:g}s on the Dask cluster"))
        return failed

    def cancel_pending(self) -> None:
        self._stopping = True
        for remote in self._in_flight.values():
            if remote.future is not None:
                remote.future.cancel()

    def close(self, terminate: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self.cancel_pending()
        try:
            self._client.close(timeout=CONNECT_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - closing must never hide the run's outcome
            logger.debug("closing the Dask client failed: {}", exc)

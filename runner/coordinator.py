"""The pipeline: retrieval batches in threads, rendering in processes, streamed between them.

All state about charts lives on the main thread. Batch threads, the fallback thread and
render-future callbacks only put events on one queue; the main loop takes them off and
acts (submit a render the moment a chart's data arrives, record a result, retry, fail).
So a chart's status has one writer, and every chart ends in exactly one final state.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from runner.charts import ChartSpec
from runner.config import RunnerConfig
from runner.errors import ChartError
from runner.files import remove_temporary_files
from runner.jobs import Batch, BatchResult, ChartData, ChartJob, RenderOutput, RenderTask, Retrieval
from runner.metrics import RunMetrics
from runner.report import ChartResult
from runner.retrieval.direct import fetch_chart, run_batch
from runner.retrieval.sessions import SessionPool

MAX_RENDER_CRASHES = 2  # a chart that kills its worker this often is failed, not retried
INTERRUPT_GRACE_SECONDS = 5.0  # running renders may finish within this after Ctrl-C
WATCH_INTERVAL_SECONDS = 0.2  # how often hung renders are looked for
# Charts handed to the pool at once, per worker: enough that no worker waits for the next chart,
# few enough that a replaced pool has little left to finish and a stop has little to cancel.
RENDERS_IN_POOL_PER_WORKER = 2


@dataclass(frozen=True)
class RunRequest:
    run_id: str
    run_dir: Path
    merchants: tuple[str, ...]
    charts: tuple[ChartSpec, ...]
    start_date: str
    end_date: str
    batches: tuple[Batch, ...]


@dataclass(frozen=True)
class RunResult:
    charts: tuple[ChartResult, ...]
    batches: tuple[BatchResult, ...]
    metrics: dict[str, Any]
    interrupted: bool
    server_unreachable: bool


@dataclass
class _Chart:
    """The coordinator's working state for one chart (main thread only)."""

    job: ChartJob
    batch_id: str
    status: str = "pending"
    error_type: str | None = None
    error: str | None = None
    attempts: int = 0
    retrieve_ms: float | None = None
    data: ChartData | None = None
    queued_at: float | None = None  # when its data was ready to render
    finished_at: float | None = None
    output: RenderOutput | None = None
    crashes: int = 0
    worker_pid: int | None = None  # the worker rendering it now, once it said so
    render_began: float | None = None  # monotonic time its current render began

    def result(self, run_id: str) -> ChartResult:
        out = self.output
        queue_ms = total_ms = None
        if out is not None and self.queued_at is not None and self.finished_at is not None:
            in_render = (self.finished_at - self.queued_at) * 1000
            queue_ms = round(max(0.0, in_render - out.render_ms), 1)
            total_ms = round((self.retrieve_ms or 0.0) + in_render, 1)
        return ChartResult(
            run_id=run_id,
            merchant=self.job.merchant,
            chart_id=self.job.spec.id,
            title=self.job.spec.title,
            status=self.status,
            error_type=self.error_type,
            error=self.error,
            batch_id=self.batch_id,
            attempts=self.attempts,
            retrieve_ms=None if self.retrieve_ms is None else round(self.retrieve_ms, 1),
            queue_ms=queue_ms,
            render_ms=out.render_ms if out else None,
            total_ms=total_ms,
            output=out.output if out else None,
            bytes=out.bytes if out else None,
            sha256=out.sha256 if out else None,
            worker_pid=out.worker_pid if out else None,
            paragraph=self.data.paragraph if self.data else None,
        )


@dataclass
class Progress:
    """What the progress display shows; the coordinator fills it, a reporter draws it."""

    batches_total: int = 0
    batches_done: int = 0
    charts_total: int = 0
    charts_ok: int = 0
    charts_failed: int = 0
    rendering: int = 0
    listeners: list[Callable[[Progress], None]] = field(default_factory=list)

    @property
    def retrieving(self) -> int:
        return self.charts_total - self.charts_ok - self.charts_failed - self.rendering

    def changed(self) -> None:
        for listener in self.listeners:
            listener(self)


class Coordinator:
    def __init__(self, config: RunnerConfig, request: RunRequest, pool: SessionPool,
                 progress: Progress | None = None, stop: threading.Event | None = None) -> None:
        self.config = config
        self.request = request
        self.progress = progress or Progress()
        self.metrics = RunMetrics()
        self.stop = stop or threading.Event()
        self._events: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = queue.SimpleQueue()
        self._charts: dict[tuple[str, str], _Chart] = {}
        for batch in request.batches:
            for job in batch.jobs:
                self._charts[job.key] = _Chart(job, batch.batch_id)
        self._open = len(self._charts)
        self._batch_results: dict[str, BatchResult] = {}
        self._batches_running = 0
        self._render_futures: dict[Future[Any], tuple[str, str]] = {}
        self._waiting: deque[_Chart] = deque()  # data in hand, waiting for a place in the pool
        self._render_exec: Executor | None = None
        self._render_generation = 0
        self._pools: dict[int, ProcessPoolExecutor] = {}  # every process pool of the run, by generation
        self._workers: dict[int, dict[int, Any]] = {}  # generation -> that pool's pid -> Process, while any runs
        self._exit_codes: dict[int, dict[int, int | None]] = {}  # generation -> pid -> exit code, once all ended
        self._crashed: dict[int, set[int]] = {}  # generation -> pids that died on their own
        self._started: Any = None  # (reader, writer): workers report (pid, chart key) as a render begins
        self._submitted_to_pool = 0
        self._faults: dict[str, str] = {}
        self._last_watch = 0.0
        self._batch_exec: ThreadPoolExecutor | None = None
        self._fallback_exec: ThreadPoolExecutor | None = None
        self._pool = pool
        self._stopping = False
        self._server_unreachable = False
        self.progress.batches_total = len(request.batches)
        self.progress.charts_total = len(self._charts)

    # -- public -------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Called from a signal handler: stop new work and unblock waits on tool calls."""
        self.stop.set()
        self._pool.cancel_all()

    def run(self) -> RunResult:
        config = self.config
        try:
            if not config.enable_concurrent_data_retrieval:
                self._start_render_pool()
                if self._preflight():
                    self._run_sequential()
            elif self._preflight():
                self._run_concurrent()
                # Starting the pool blocks until the forkserver has imported matplotlib (~0.5 s):
                # the batches are on their way by then, and their charts wait in the queue.
                self._start_render_pool()
            # Wait for the batch records too: a batch's last chart can fail before its batch is reported.
            self._pump(lambda: self._open == 0 and self._batches_running == 0)
        finally:
            self._shutdown()
        return self._result()

    # -- the main loop ----------------------------------------------------------------------------
    def _emit(self, handler: Callable[..., None], *args: Any) -> None:
        self._events.put((handler, args))

    def _pump(self, done: Callable[[], bool], block: bool = True) -> None:
        """Handle events until `done()`; with block=False, only those already queued."""
        while not done():
            if self.stop.is_set() and not self._stopping:
                self._interrupt()
                return
            if time.monotonic() - self._last_watch >= WATCH_INTERVAL_SECONDS:
                self._watch_renders()
            try:
                handler, args = self._events.get(timeout=WATCH_INTERVAL_SECONDS) if block else self._events.get_nowait()
            except queue.Empty:
                if not block:
                    return
                self.progress.changed()
                continue
            handler(*args)
            self.progress.changed()

    def _run_concurrent(self) -> None:
        workers = self.config.max_concurrent_batches
        self._batch_exec = ThreadPoolExecutor(workers, thread_name_prefix="batch")
        self._fallback_exec = ThreadPoolExecutor(1, thread_name_prefix="fallback")
        self.metrics.retrieval_started = time.perf_counter()
        for batch in self.request.batches:
            self._batches_running += 1
            future = self._batch_exec.submit(self._run_one_batch, batch, True)
            future.add_done_callback(lambda f, b=batch: self._emit(self._on_batch_done, b, f))

    def _run_sequential(self) -> None:
        self.metrics.retrieval_started = time.perf_counter()
        for batch in self.request.batches:
            if self.stop.is_set():
                break
            future: Future[BatchResult] = Future()
            self._batches_running += 1
            try:
                future.set_result(self._run_one_batch(batch, False))
            except concurrent.futures.CancelledError:
                self._batches_running -= 1
                break
            except Exception as exc:  # noqa: BLE001 - recorded against the batch below
                future.set_exception(exc)
            self._on_batch_done(batch, future)
            self._pump(lambda: False, block=False)

    def _run_one_batch(self, batch: Batch, concurrent_calls: bool) -> BatchResult:
        emit = lambda r: self._emit(self._on_retrieval, r)  # noqa: E731
        with self.metrics.batch_gauge, self._pool.acquire() as slot:
            if self.config.retrieval_mode == "agent":
                from runner.retrieval.agent import run_agent_batch

                return run_agent_batch(batch, slot, self.config, emit)
            return run_batch(batch, slot, self.config, emit, concurrent_calls)

    # -- retrieval events -----------------------------------------------------------------------
    def _preflight(self) -> bool:
        """Open the first session (with retries) so an unreachable server fails fast, once."""
        config = self.config
        for attempt in range(config.retry_attempts + 1):
            try:
                with self._pool.acquire() as slot:
                    slot.run(lambda s: s.client())
                return True
            except ChartError as exc:
                last = exc
                logger.warning("MCP server not reachable (attempt {}/{}): {}", attempt + 1,
                               config.retry_attempts + 1, exc.message)
            except concurrent.futures.CancelledError:
                return False
            if attempt < config.retry_attempts and self.stop.wait(config.retry_delay_seconds * 2 ** attempt):
                return False
        self._server_unreachable = True
        logger.error("giving up: {}", last.message)
        for chart in self._charts.values():
            self._fail(chart, last.error_type, last.message)
        return False

    def _on_retrieval(self, retrieval: Retrieval) -> None:
        chart = self._charts[retrieval.job.key]
        if chart.status != "pending":
            return
        chart.attempts = retrieval.attempts
        chart.retrieve_ms = retrieval.retrieve_ms
        self.metrics.batch_retries += retrieval.attempts - 1
        if retrieval.data is None:
            self._fail(chart, retrieval.error_type or "internal", retrieval.error or "no data and no reason")
        elif not self._stopping:
            chart.data = retrieval.data
            self._queue_render(chart)

    def _on_batch_done(self, batch: Batch, future: Future[BatchResult]) -> None:
        self._batches_running -= 1
        self.progress.batches_done += 1
        if future.cancelled():
            return
        error = future.exception()
        if isinstance(error, concurrent.futures.CancelledError):
            return  # its calls were cancelled by a stop: its charts are cancelled with the rest
        if error is not None:
            error_type = error.error_type if isinstance(error, ChartError) else "internal"
            if not isinstance(error, ChartError):
                logger.opt(exception=error).bind(batch=batch.batch_id).error("batch crashed")
            result = BatchResult(batch.batch_id, batch.merchant, ",".join(j.spec.id for j in batch.jobs),
                                 "failed", 1, "", 0.0, error_type=error_type, error=str(error)[:300])
            self._record_batch(result)
            for job in batch.jobs:
                self._fail(self._charts[job.key], error_type, f"batch failed: {str(error)[:300]}")
            return
        result = future.result()
        self._record_batch(result)
        if not result.held:
            return
        if (self._fallback_exec is not None and self.config.enable_fallback_to_sequential
                and not self._stopping):
            self.metrics.sequential_fallbacks += 1
            logger.bind(batch=batch.batch_id).info("retrying {} chart(s) one by one", len(result.held))
            for retrieval in result.held:
                self._fallback_exec.submit(self._fallback_one, retrieval)
        else:
            for retrieval in result.held:
                self._on_retrieval(retrieval)

    def _record_batch(self, result: BatchResult) -> None:
        self._batch_results[result.batch_id] = result
        self.metrics.batches_total += 1
        if result.status == "failed":
            self.metrics.batches_failed += 1
        else:
            self.metrics.batches_ok += 1
        self.metrics.batch_ms.append(result.wall_ms)
        self.metrics.input_tokens += result.input_tokens or 0
        self.metrics.output_tokens += result.output_tokens or 0
        self.metrics.max_batch_context_tokens = max(self.metrics.max_batch_context_tokens,
                                                    result.context_tokens or 0)
        if len(self._batch_results) == len(self.request.batches):
            self.metrics.retrieval_finished = time.perf_counter()

    def _fallback_one(self, held: Retrieval) -> None:
        if self.stop.is_set():
            return
        job, batch_id = held.job, held.batch_id
        try:
            with self._pool.acquire() as slot:
                again = slot.run(lambda s: fetch_chart(s, job, batch_id, self.config))
        except concurrent.futures.CancelledError:
            return
        self.metrics.batch_retries += 1  # the fallback's own first try is a retry too
        merged = Retrieval(job, batch_id, again.data, again.error_type, again.error,
                           held.attempts + again.attempts, held.retrieve_ms + again.retrieve_ms)
        self._emit(self._on_retrieval, merged)

    # -- rendering --------------------------------------------------------------------------------
    def _start_render_pool(self) -> None:
        from runner.render import pool

        self._faults = pool.parse_render_faults(self.config.test_render_fault)
        if self.config.enable_concurrent_chart_generation:
            workers = pool.worker_count(self.config.max_concurrent_charts, self.config.oversubscribe_workers)
            self.metrics.workers, self.metrics.start_method = workers, pool.START_METHOD
            self._started = pool.started_channel()
            self._new_process_pool()
        else:
            self._render_exec = pool.start_inline()
            self.metrics.workers, self.metrics.start_method = 1, "inline"

    def _new_process_pool(self) -> None:
        from runner.render import pool

        self._render_generation += 1
        executor = pool.start_process_pool(self.metrics.workers, self._started[1])
        self._render_exec = self._pools[self._render_generation] = executor
        self._workers[self._render_generation] = pool.worker_processes(executor)
        self._submitted_to_pool = 0

    def _restart_broken_pool(self, generation: int) -> None:
        """Replace a broken pool once, and learn which of its workers died on their own."""
        from runner.render import pool

        if generation in self._crashed:
            return
        if generation in self._pools:
            self._pools[generation].shutdown(wait=True, cancel_futures=True)  # joins workers: exit codes known
        if generation not in self._exit_codes:
            self._exit_codes[generation] = pool.exit_codes(self._workers[generation])
        self._crashed[generation] = pool.crashed_pids(self._exit_codes[generation])
        if generation == self._render_generation and not self._stopping:
            self._new_process_pool()
            self.metrics.worker_restarts += 1
            logger.warning("a render worker died; started a new pool (restart {})", self.metrics.worker_restarts)

    def _recycle_pool_if_due(self) -> None:
        """Replace the pool after `render_worker_max_charts` charts per worker (memory stays flat).

        The old pool finishes what it was given, then its workers exit. Not max_tasks_per_child:
        above 1 it hangs on Python 3.11 (cpython#115634).
        """
        due = self.config.render_worker_max_charts * self.metrics.workers
        if not self._render_generation or self._submitted_to_pool < due:
            return
        self._render_exec.shutdown(wait=False)
        self._new_process_pool()
        self.metrics.pool_recycles += 1

    def _queue_render(self, chart: _Chart, again: bool = False) -> None:
        """Render when a worker is free; a chart that goes again goes first."""
        chart.queued_at = chart.queued_at or time.perf_counter()
        if again:
            self._waiting.appendleft(chart)
        else:
            self._waiting.append(chart)
        self._fill_pool()

    def _fill_pool(self) -> None:
        # In-process rendering has no pool to fill: each chart renders as it is handed over.
        limit = self.metrics.workers * RENDERS_IN_POOL_PER_WORKER if self._render_generation else math.inf
        while self._waiting and len(self._render_futures) < limit and not self._stopping:
            chart = self._waiting.popleft()
            if chart.status == "pending":
                self._submit_render(chart)

    def _submit_render(self, chart: _Chart) -> None:
        from runner.render.worker import render

        assert self._render_exec is not None and chart.data is not None
        self._recycle_pool_if_due()
        fault = self._faults.get(chart.job.spec.id) if self._render_generation else None  # never in-process
        task = RenderTask(chart.job, chart.data, self.config.png_compress_level, fault)
        now = time.perf_counter()
        try:
            future = self._render_exec.submit(render, task)
        except BrokenProcessPool:
            self._restart_broken_pool(self._render_generation)
            future = self._render_exec.submit(render, task)
        self._submitted_to_pool += 1
        chart.worker_pid = chart.render_began = None
        self._render_futures[future] = chart.job.key
        self.metrics.render_submitted(now)
        self.progress.rendering += 1
        future.add_done_callback(lambda f, g=self._render_generation: self._emit(self._on_render_done, f, g))

    def _note_started_renders(self) -> None:
        if self._started is None:
            return
        reader = self._started[0]
        while reader.poll():
            pid, key = reader.recv()
            chart = self._charts.get(tuple(key))
            if chart is not None and chart.status == "pending":
                chart.worker_pid, chart.render_began = pid, time.monotonic()

    def _release_ended_pools(self, every: bool = False) -> None:
        """Close the process handles of replaced pools whose workers have all ended: each holds
        two pipes, and a long run replaces its pool many times."""
        from runner.render import pool

        for generation in list(self._workers):
            processes = self._workers[generation]
            if generation == self._render_generation and not every:
                continue
            if any(process.exitcode is None for process in processes.values()):
                continue
            self._exit_codes[generation] = pool.exit_codes(processes)
            pool.close_processes(processes)
            del self._workers[generation]
            self._pools.pop(generation).shutdown(wait=True)  # its manager thread ends too

    def _watch_renders(self) -> None:
        """End the worker of a render that runs past its timeout; the pool then restarts."""
        self._last_watch = time.monotonic()
        self._release_ended_pools()
        self._note_started_renders()
        limit = self.config.render_timeout_seconds
        for key in set(self._render_futures.values()):
            chart = self._charts[key]
            if chart.status != "pending" or chart.render_began is None or chart.worker_pid is None:
                continue
            if self._last_watch - chart.render_began > limit:
                try:
                    os.kill(chart.worker_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                message = (f"{chart.job.spec.id}: render did not finish within {limit:g}s; "
                           f"its worker (pid {chart.worker_pid}) was stopped")
                logger.warning("{} {}", chart.job.merchant, message)
                self._fail(chart, "timeout", message)

    def _on_render_done(self, future: Future[RenderOutput], generation: int) -> None:
        try:
            self._settle_render(future, generation)
        finally:
            self._fill_pool()  # a place in the pool is free

    def _settle_render(self, future: Future[RenderOutput], generation: int) -> None:
        key = self._render_futures.pop(future, None)
        if key is None:
            return
        chart = self._charts[key]
        self.metrics.render_in_flight -= 1
        self.progress.rendering -= 1
        self.metrics.render_finished = time.perf_counter()
        if future.cancelled():
            return  # only when stopping: the chart is cancelled with the rest
        error = future.exception()
        if error is None:
            out = future.result()
            chart.output = out
            chart.finished_at = time.perf_counter()
            self.metrics.charts_rendered += 1
            self.metrics.render_ms.append(out.render_ms)
            self.metrics.cpu_ms += out.cpu_ms
            self.metrics.peak_worker_rss_mb = max(self.metrics.peak_worker_rss_mb, out.worker_rss_mb)
            logger.debug("{} {} rendered in {:.0f} ms by pid {}", chart.job.merchant, chart.job.spec.id,
                         out.render_ms, out.worker_pid)
            self._finish(chart, "ok")
        elif isinstance(error, BrokenProcessPool):
            self._restart_broken_pool(generation)
            self._note_started_renders()
            if chart.status != "pending" or self._stopping:
                return
            # Only the chart whose own worker died is to blame; charts that were queued or running
            # beside it lost nothing but time and go again.
            if chart.worker_pid is not None and chart.worker_pid in self._crashed[generation]:
                chart.crashes += 1
                logger.warning("{} {}: its render worker died (crash {} of {})", chart.job.merchant,
                               chart.job.spec.id, chart.crashes, MAX_RENDER_CRASHES)
            if chart.crashes >= MAX_RENDER_CRASHES:
                self._fail(chart, "worker_crashed",
                           f"{chart.job.spec.id}: render worker died {chart.crashes} times on this chart")
            else:
                self._queue_render(chart, again=True)
        elif isinstance(error, ChartError):
            self._fail(chart, error.error_type, error.message)
        else:
            self._fail(chart, "render_error", f"{type(error).__name__}: {error}"[:300])

    # -- final states -------------------------------------------------------------------------------
    def _finish(self, chart: _Chart, status: str) -> None:
        if chart.status != "pending":
            return
        chart.status = status
        self._open -= 1
        if status == "ok":
            self.progress.charts_ok += 1
        else:
            self.progress.charts_failed += 1

    def _fail(self, chart: _Chart, error_type: str, message: str) -> None:
        if chart.status != "pending":
            return
        chart.error_type, chart.error = error_type, message
        self.metrics.errors_by_type[error_type] += 1
        self._finish(chart, "cancelled" if error_type == "cancelled" else "failed")

    def _interrupt(self) -> None:
        """Stop new work, give running renders a short grace, cancel everything else."""
        self._stopping = True
        logger.warning("interrupted: stopping new work; unfinished charts will be reported as cancelled")
        for executor in (self._batch_exec, self._fallback_exec):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
        self._pool.cancel_all()
        for future in list(self._render_futures):
            future.cancel()
        deadline = time.monotonic() + INTERRUPT_GRACE_SECONDS
        while self._render_futures and time.monotonic() < deadline:
            try:
                handler, args = self._events.get(timeout=0.1)
            except queue.Empty:
                continue
            if handler == self._on_render_done:
                handler(*args)
        for chart in self._charts.values():
            self._fail(chart, "cancelled", "the run was interrupted before this chart finished")

    def _shutdown(self) -> None:
        for executor in (self._batch_exec, self._fallback_exec):
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
        from runner.render import pool

        for generation, executor in self._pools.items():
            if self._stopping:
                pool.stop_workers(self._workers.get(generation, {}))
            executor.shutdown(wait=True, cancel_futures=True)
        for processes in self._workers.values():
            # A replaced pool's workers may still be finishing their last chart: wait for them, so
            # none outlives the run; its pool no longer does (shutdown() waits only the first time).
            pool.stop_workers(processes, grace=self.config.render_timeout_seconds)
        self._release_ended_pools(every=True)
        if self._started is not None:
            for end in self._started:
                end.close()
        if self._render_generation:
            # A worker killed mid-write (crashed, timed out, or ended beside one that did) leaves
            # its temporary file; every worker is gone now, so none of these is being written.
            folders = {Path(chart.job.output).parent for chart in self._charts.values()}
            remove_temporary_files(folders)

    def _result(self) -> RunResult:
        run_id = self.request.run_id
        # A batch that never ran (interrupted, or the server was unreachable) is still listed.
        batches = tuple(
            self._batch_results.get(b.batch_id)
            or BatchResult(b.batch_id, b.merchant, ",".join(j.spec.id for j in b.jobs),
                           "cancelled" if self._stopping else "failed", 0, "", 0.0,
                           error_type=self._charts[b.jobs[0].key].error_type,
                           error=self._charts[b.jobs[0].key].error)
            for b in self.request.batches
        )
        metrics = self.metrics.as_report(self._pool.counters.tool_calls, self._pool.counters.sessions_opened)
        return RunResult(
            charts=tuple(chart.result(run_id) for chart in self._charts.values()),
            batches=batches,
            metrics=metrics,
            interrupted=self._stopping,
            server_unreachable=self._server_unreachable,
        )

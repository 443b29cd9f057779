"""The coordinator: one event loop, and each chart's state machine.

Batch threads, the fallback thread, the render pool's starter and render futures only put
events (runner.events) on one queue; the main thread takes them off and acts: a chart goes
to rendering the moment its data arrives, results are recorded, a failure is final once.
So a chart's state has one writer, and every chart ends in exactly one final state.
Processes are the render supervisor's business; retries and batches the retrieval stage's.
"""

from __future__ import annotations

import concurrent.futures
import enum
import queue
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loguru import logger

from runner.clock import iso_time
from runner.config import RunnerConfig
from runner.decks.book import DeckBook, DeckResult
from runner.errors import ChartError, ErrorType, one_line
from runner.events import BatchEnded, ChartRetrieved, Event, RenderDone, RenderPoolReady
from runner.files import write_atomically
from runner.kinds.window import shown_data
from runner.metrics import RunMetrics
from runner.progress import Progress
from runner.records import Batch, BatchResult, BuiltDeck, ChartData, ChartJob, RenderedChart, RenderTask, Retrieval
from runner.render.backend import DECK, GoAgain, Output, Rendered, RenderFailed, RenderSupervisor
from runner.report import ChartResult
from runner.retrieval.parse import data_document
from runner.retrieval.sessions import SessionPool
from runner.retrieval.stage import Cancelled, RetrievalStage
from runner.status import BatchStatus, ChartStatus

STOP_GRACE_SECONDS = 5.0  # running renders may finish within this after Ctrl-C
TICK_SECONDS = 0.2  # how often hung renders are looked for and progress is shown


class ChartState(enum.Enum):
    RETRIEVING = "retrieving"  # no data yet
    QUEUED = "queued"  # data in hand: waiting for a worker, or being rendered
    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = {ChartState.OK: ChartStatus.OK, ChartState.FAILED: ChartStatus.FAILED,
         ChartState.CANCELLED: ChartStatus.CANCELLED}


@dataclass(frozen=True)
class RunRequest:
    run_id: str
    batches: tuple[Batch, ...]


@dataclass(frozen=True)
class RunRecords:
    """Everything the coordinator ended with: the rows of the report, before it is written."""

    charts: tuple[ChartResult, ...]
    batches: tuple[BatchResult, ...]
    metrics: dict[str, Any]
    interrupted: bool
    server_unreachable: bool
    decks: tuple[DeckResult, ...] = ()


HOST = socket.gethostname()


@dataclass
class _Chart:
    """The coordinator's working state for one chart (main thread only)."""

    job: ChartJob
    batch_id: str
    state: ChartState = ChartState.RETRIEVING
    error_type: ErrorType | None = None
    error: str | None = None
    attempts: int = 0
    retrieve_ms: float | None = None
    data: ChartData | None = None
    queued_at: float | None = None  # when its data was ready to render
    finished_at: float | None = None
    rendered: RenderedChart | None = None  # without its PNG, once written: a long run holds thousands
    size: int | None = None  # bytes of the PNG written
    data_written: bool = False
    started_wall: datetime | None = None
    ended_wall: datetime | None = None

    def result(self, run_id: str) -> ChartResult:
        out = self.rendered if self.state is ChartState.OK else None
        queue_ms = total_ms = None
        if out is not None and self.queued_at is not None and self.finished_at is not None:
            in_render = (self.finished_at - self.queued_at) * 1000
            queue_ms = round(max(0.0, in_render - out.render_ms), 1)
            total_ms = round((self.retrieve_ms or 0.0) + in_render, 1)
        state = self.state if self.state in FINAL else ChartState.CANCELLED
        return ChartResult(
            run_id=run_id, merchant=self.job.merchant, chart_id=self.job.spec.id, title=self.job.spec.title,
            status=FINAL[state], error_type=self.error_type, error=self.error, batch_id=self.batch_id,
            attempts=self.attempts, retrieve_ms=None if self.retrieve_ms is None else round(self.retrieve_ms, 1),
            queue_ms=queue_ms, render_ms=out.render_ms if out else None, total_ms=total_ms,
            output=self.job.output if out else None, bytes=self.size if out else None,
            sha256=out.sha256 if out else None, worker_pid=out.worker_pid if out and not out.cached else None,
            data_output=self.job.data_output if self.data_written else None,
            paragraph=self.data.paragraph if self.data else None,
            started_at=iso_time(self.started_wall), finished_at=iso_time(self.ended_wall),
            cached=bool(out and out.cached),
            worker=None if out is None or out.cached else out.worker or f"{HOST}:{out.worker_pid}",
        )


class Coordinator:
    def __init__(self, config: RunnerConfig, request: RunRequest, sessions: SessionPool,
                 supervisor: RenderSupervisor, on_progress: Callable[[Progress], None] | None = None,
                 stop: threading.Event | None = None, decks: DeckBook | None = None) -> None:
        self.config = config
        self.request = request
        self.metrics = RunMetrics()
        self.stop = stop or threading.Event()
        self.render = supervisor
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.retrieval = RetrievalStage(config, sessions, self._events.put, self.stop)
        self._on_progress = on_progress or (lambda progress: None)
        self._charts = {job.key: _Chart(job, batch.batch_id) for batch in request.batches for job in batch.jobs}
        self.decks = decks or DeckBook([], (), None, "")
        self._by_merchant: dict[str, list[_Chart]] = {}
        for chart in self._charts.values():
            self._by_merchant.setdefault(chart.job.merchant, []).append(chart)
        self._states = Counter({ChartState.RETRIEVING: len(self._charts)})
        self._batch_results: dict[str, BatchResult] = {}
        self._batches_running = 0
        self._waiting: deque[_Chart] = deque()  # data in hand, not yet handed to the supervisor
        self._stop_deadline: float | None = None
        self._server_unreachable = False

    def run(self) -> RunRecords:
        try:
            try:
                unreachable = self.retrieval.preflight()
            except Cancelled:
                unreachable = None
            if unreachable is not None:
                self._server_unreachable = True
                logger.error("giving up: {}", unreachable.message)
                for chart in self._charts.values():
                    self._fail(chart, unreachable.error_type, unreachable.message, quiet=True)
            elif not self.stop.is_set():
                self._batches_running = len(self.request.batches)
                self.metrics.retrieval_started = time.perf_counter()
                self.retrieval.start(self.request.batches)
                # After the batches: the workers fork from the forkserver, which may still be
                # importing matplotlib; the first session and batches should not wait behind it.
                self.render.start(on_ready=lambda: self._events.put(RenderPoolReady()))
            self._loop()
        finally:
            self.retrieval.close()
            if self.metrics.retrieval_started is not None and self.metrics.retrieval_finished is None:
                self.metrics.retrieval_finished = time.perf_counter()  # stopped: retrieval ended now
            self.render.close(terminate=self._stopping)
        return self._result()

    # -- the loop -----------------------------------------------------------------------------------
    @property
    def _stopping(self) -> bool:
        return self._stop_deadline is not None

    def _finished(self) -> bool:
        if self._stopping:
            return self.render.in_flight() == 0 or time.monotonic() > (self._stop_deadline or 0)
        # Wait for the batch records too: a batch's last chart can fail before its batch is reported.
        return self._states[ChartState.RETRIEVING] + self._states[ChartState.QUEUED] == 0 \
            and self._batches_running == 0 and self.decks.pending() == 0

    def _loop(self) -> None:
        last_tick = 0.0
        while not self._finished():
            if self.stop.is_set() and not self._stopping:
                self._begin_stop()
            if time.monotonic() - last_tick >= TICK_SECONDS:
                last_tick = time.monotonic()
                for timed_out in self.render.tick():
                    self._render_failed(timed_out)
                self._fill()  # places freed; a supervisor that lost its cluster fails what it is handed
            elif self.decks.due:  # a merchant's last chart may have failed, which frees no worker
                self._fill()
            try:
                self._handle(self._events.get(timeout=TICK_SECONDS))
            except queue.Empty:
                pass
            self._on_progress(self.progress())
        if self._stopping:
            for chart in self._charts.values():
                self._fail(chart, ErrorType.CANCELLED, "the run was interrupted before this chart finished")
        self._on_progress(self.progress())

    def _handle(self, event: Event) -> None:
        match event:
            case ChartRetrieved(retrieval):
                self._on_retrieval(retrieval)
            case BatchEnded(batch, future):
                self._on_batch_ended(batch, future)
            case RenderDone(future):
                self._on_render_done(future)
            case RenderPoolReady():
                self._fill()

    def _begin_stop(self) -> None:
        """Stop new work; renders already running get a short grace, everything else is cancelled."""
        self._stop_deadline = time.monotonic() + STOP_GRACE_SECONDS
        self.retrieval.cancel(lambda: logger.warning("stop requested: no new work; unfinished charts will be "
                                                     "reported as cancelled"))
        self.render.cancel_pending()

    def progress(self) -> Progress:
        rendering = self.render.rendering()
        return Progress(
            batches_total=len(self.request.batches), batches_done=len(self._batch_results),
            charts_total=len(self._charts), retrieving=self._states[ChartState.RETRIEVING],
            queued=self._states[ChartState.QUEUED] - rendering, rendering=rendering,
            done=self._states[ChartState.OK], failed=self._states[ChartState.FAILED],
            cancelled=self._states[ChartState.CANCELLED],
            running=tuple(f"{b.batch_id} {b.merchant}: {', '.join(j.spec.id for j in b.jobs)}"
                          for b in self.retrieval.running()),
        )

    # -- retrieval -----------------------------------------------------------------------------------
    def _on_retrieval(self, retrieval: Retrieval) -> None:
        chart = self._charts[retrieval.job.key]
        if chart.state is not ChartState.RETRIEVING or self._stopping:
            return
        chart.attempts = retrieval.attempts
        chart.retrieve_ms = retrieval.retrieve_ms
        chart.started_wall = datetime.now(UTC) - timedelta(milliseconds=retrieval.retrieve_ms)
        self.metrics.batch_retries += retrieval.attempts - 1
        if retrieval.data is None:
            self._fail(chart, retrieval.error_type or ErrorType.INTERNAL, retrieval.error or "no data and no reason")
            return
        try:
            write_atomically(Path(chart.job.data_output), data_document(chart.job, retrieval.data))
        except OSError as exc:
            self._fail(chart, ErrorType.WRITE_ERROR, f"{chart.job.data_output}: {exc.strerror or exc}")
            return
        chart.data_written = True
        chart.data = retrieval.data
        chart.queued_at = time.perf_counter()
        self._move(chart, ChartState.QUEUED)
        self._waiting.append(chart)
        self._fill()

    def _on_batch_ended(self, batch: Batch, future: concurrent.futures.Future[BatchResult]) -> None:
        self._batches_running -= 1
        if future.cancelled():
            return
        error = future.exception()
        if isinstance(error, concurrent.futures.CancelledError):
            return  # its calls were cancelled by a stop: its charts are cancelled with the rest
        if error is not None:
            error_type = error.error_type if isinstance(error, ChartError) else ErrorType.INTERNAL
            if not isinstance(error, ChartError):
                logger.opt(exception=error).bind(batch=batch.batch_id).error("batch crashed")
            message = one_line(str(error), 300)
            self._record_batch(BatchResult(batch.batch_id, batch.merchant, batch.chart_ids, BatchStatus.FAILED, 1, "",
                                           0.0, error_type=error_type, error=message))
            for job in batch.jobs:
                self._fail(self._charts[job.key], error_type, f"batch failed: {message}")
            return
        result = future.result()
        self._record_batch(result)
        if result.held and (self._stopping or not self.retrieval.fall_back(result.held, batch.batch_id)):
            for retrieval in result.held:
                self._on_retrieval(retrieval)
        elif result.held:
            self.metrics.sequential_fallbacks += 1

    def _record_batch(self, result: BatchResult) -> None:
        self._batch_results[result.batch_id] = result
        self.metrics.record_batch(result)
        if len(self._batch_results) == len(self.request.batches):
            self.metrics.retrieval_finished = time.perf_counter()

    # -- rendering -----------------------------------------------------------------------------------
    def _fill(self) -> None:
        """Hand due decks, then waiting charts, to the supervisor while it has room."""
        while self.decks.due and not self._stopping:
            merchant = self.decks.due[0]
            charts = self._by_merchant[merchant]
            if self.render.capacity() == 0 and any(c.state is ChartState.OK for c in charts):
                break  # a deck with charts to show waits for a worker; one without is settled here
            self.decks.due.popleft()
            data = {c.job.spec.id: c.data if c.state is ChartState.OK else None for c in charts}
            deck = self.decks.task(merchant, data, {c.job.spec.id: f"{c.error_type}: {c.error}" if c.error else None
                                                    for c in charts})
            if deck is not None:
                self.render.submit(deck, lambda future: self._events.put(RenderDone(future)))
        while self._waiting and not self._stopping and self.render.capacity() > 0:
            chart = self._waiting.popleft()
            if chart.state is ChartState.QUEUED and chart.data is not None:
                shown = shown_data(chart.job.spec, chart.data, chart.job.start_date, chart.job.end_date)
                task = RenderTask(chart.job, shown, self.config.png_compress_level)
                self.render.submit(task, lambda future: self._events.put(RenderDone(future)))
                self.metrics.render_submitted(time.perf_counter(), self.render.in_flight(), self.render.workers)

    def _on_render_done(self, future: concurrent.futures.Future[Output]) -> None:
        settled = self.render.settle(future)
        self.metrics.render_finished = time.perf_counter()
        match settled:
            case Rendered(key, BuiltDeck() as deck):
                self.decks.built(key[0], deck)  # a document it could not write is counted from its row
            case Rendered(key, RenderedChart() as rendered):
                self._write(self._charts[key], rendered)
            case RenderFailed():
                self._render_failed(settled)
            case GoAgain(key):
                if not self._stopping and key[1] == DECK:
                    self.decks.due.appendleft(key[0])
                elif not self._stopping:
                    self._waiting.appendleft(self._charts[key])
        self._fill()  # a place is free

    def _render_failed(self, failed: RenderFailed) -> None:
        merchant, what = failed.key
        if what != DECK:
            self._fail(self._charts[failed.key], failed.error_type, failed.message)
            return
        logger.warning("deck for {} failed ({}): {}", merchant, failed.error_type, failed.message)
        self.decks.failed(merchant, ErrorType.DECK_ERROR, failed.message)

    def _write(self, chart: _Chart, rendered: RenderedChart) -> None:
        if chart.state is not ChartState.QUEUED:
            return
        try:
            write_atomically(Path(chart.job.output), rendered.png)
        except OSError as exc:
            self._fail(chart, ErrorType.WRITE_ERROR, f"{chart.job.output}: {exc.strerror or exc}")
            return
        chart.rendered, chart.size = replace(rendered, png=b""), len(rendered.png)
        chart.finished_at = time.perf_counter()
        self.metrics.record_render(rendered)
        how = "copied from the render cache" if rendered.cached else \
            f"rendered in {rendered.render_ms:.0f} ms by {rendered.worker or f'pid {rendered.worker_pid}'}"
        logger.debug("{} {} {}", chart.job.merchant, chart.job.spec.id, how)
        self._move(chart, ChartState.OK)

    # -- final states --------------------------------------------------------------------------------
    def _move(self, chart: _Chart, state: ChartState) -> None:
        self._states[chart.state] -= 1
        self._states[state] += 1
        chart.state = state
        if state in FINAL:
            chart.ended_wall = datetime.now(UTC)
        if state in FINAL and not self._stopping:
            self.decks.chart_final(chart.job.merchant)

    def _fail(self, chart: _Chart, error_type: ErrorType, message: str, quiet: bool = False) -> None:
        """A chart's final failure: recorded once, and said once in the log."""
        if chart.state in FINAL:
            return
        chart.error_type, chart.error = error_type, message
        if error_type is ErrorType.CANCELLED:  # not an error: counted as cancelled (runner.metrics)
            self._move(chart, ChartState.CANCELLED)
            return
        if not quiet:
            logger.bind(batch=chart.batch_id, merchant=chart.job.merchant, chart=chart.job.spec.id,
                        error_type=error_type).warning("{} {} failed ({}): {}", chart.job.merchant, chart.job.spec.id,
                                                       error_type, message)
        self._move(chart, ChartState.FAILED)

    def _result(self) -> RunRecords:
        # A batch that never ran (interrupted, or the server was unreachable) is still listed.
        batches = tuple(
            self._batch_results.get(b.batch_id)
            or BatchResult(b.batch_id, b.merchant, b.chart_ids,
                           BatchStatus.CANCELLED if self._stopping else BatchStatus.FAILED, 0, "", 0.0,
                           error_type=self._charts[b.jobs[0].key].error_type,
                           error=self._charts[b.jobs[0].key].error)
            for b in self.request.batches
        )
        self.metrics.count_batches(batch.status for batch in batches)
        render = self.render
        self.metrics.set_render_pool(render.workers, render.start_method, render.restarts, render.recycles)
        counters = self.retrieval.sessions.counters
        metrics = self.metrics.as_report(counters.tool_calls, counters.sessions_opened,
                                         self.retrieval.batch_gauge.peak)
        metrics["decks"] = self.decks.metrics()
        return RunRecords(
            charts=tuple(chart.result(self.request.run_id) for chart in self._charts.values()),
            batches=batches,
            metrics=metrics,
            interrupted=self._stopping,
            server_unreachable=self._server_unreachable,
            decks=self.decks.results(),
        )

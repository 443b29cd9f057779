"""The coordinator: one event loop that moves each chart through its states.

Batch threads, the fallback thread, the render pool's starter and render futures only put
events (runner.events) on one queue; the main thread takes them off and acts: a chart goes
to rendering the moment its data arrives, results are recorded, a failure is final once.
A chart's state has one writer, and changes only by the named moves of runner.chart_states:
every chart ends in exactly one final state. Processes are the render supervisor's business;
retries and batches the retrieval stage's; each merchant's deck the deck ledger's
(runner.decks.book); the report's rows and metrics runner.run_report's.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from loguru import logger

from runner.chart_states import FINAL, ChartBook, ChartState, Move, TrackedChart
from runner.config import RunnerConfig
from runner.decks.book import DeckBook
from runner.errors import ChartError, ErrorType, detail
from runner.events import BatchEnded, ChartRetrieved, Event, RenderDone, RenderPoolReady
from runner.files import write_atomically
from runner.fonts import GlyphReport
from runner.journal import Journal
from runner.kinds.window import shown_data
from runner.metrics import RunMetrics
from runner.planning import Plan, PlannedMerchant, batch_count
from runner.progress import Progress
from runner.records import Batch, BatchResult, BuiltDeck, RenderedChart, RenderTask, Retrieval
from runner.render.supervisor import DECK, GoAgain, Output, Rendered, RenderFailed, RenderSupervisor
from runner.report import batch_row, flat_row
from runner.resume import Carried
from runner.retrieval.parse import data_document
from runner.retrieval.sessions import SessionPool
from runner.retrieval.stage import Cancelled, RetrievalStage
from runner.run_report import RunRecords, chart_row, deck_rows, failed_batch

RENDER_STOP_GRACE_SECONDS = 5.0  # running renders may finish within this after Ctrl-C
TICK_SECONDS = 0.2  # how often hung renders are looked for and progress is shown


@dataclass(frozen=True)
class RunPlan:
    run_id: str
    plan: Plan
    journal: Journal
    carried: Carried | None = None  # a resumed run's outcomes already final


def window(config: RunnerConfig, workers: int) -> int:
    """How many charts the coordinator takes on at once: enough for every batch thread to have its
    next batch queued and every render worker a few charts waiting, and never the whole run."""
    batches = config.max_concurrent_batches if config.enable_concurrent_data_retrieval else 1
    return 2 * batches * config.batch_size + 4 * max(1, workers)


class Coordinator:
    def __init__(self, config: RunnerConfig, request: RunPlan, sessions: SessionPool,
                 supervisor: RenderSupervisor, on_progress: Callable[[Progress], None] | None = None,
                 stop: threading.Event | None = None, decks: DeckBook | None = None) -> None:
        self.config = config
        self.request = request
        self.plan = request.plan
        self.journal = request.journal
        self.metrics = RunMetrics()
        self.stop = stop or threading.Event()
        self.render = supervisor
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.retrieval = RetrievalStage(config, sessions, self._events.put, self.stop)
        self._on_progress = on_progress or (lambda progress: None)
        self._charts = ChartBook()
        self.decks = decks or DeckBook([], (), None, "")
        self._merchants: Iterator[PlannedMerchant] | None = None  # the plan, taken a merchant at a time
        self._charts_total = 0
        self._batches_total = 0
        self._batches_done = 0
        self._batches_running = 0
        self._waiting: deque[TrackedChart] = deque()  # WAITING charts, in the order they go to the render stage
        self._stop_deadline: float | None = None
        self._unreachable: ChartError | None = None
        self.carried_charts = 0
        self.carried_decks = 0
        self.glyphs = GlyphReport()  # characters no font has, from every chart and deck: one warning for the run

    def run(self) -> RunRecords:
        self._charts_total, self._batches_total, _ = self.plan.counts
        try:
            try:
                unreachable = self.retrieval.preflight()
            except Cancelled:
                unreachable = None
            if unreachable is not None:
                self._unreachable = unreachable
                logger.error("giving up: {}", unreachable.message)
            elif not self.stop.is_set():
                self.metrics.retrieval_started = time.perf_counter()
                self._merchants = self.plan.merchants()
                self._take_on()
                # After the first batches: the workers fork from the forkserver, which may still be
                # importing matplotlib; the first session and batches should not wait behind it.
                self.render.start(on_ready=lambda: self._events.put(RenderPoolReady()))
            self._loop()
        finally:
            self.retrieval.close()
            if self.metrics.retrieval_started is not None and self.metrics.retrieval_finished is None:
                self.metrics.retrieval_finished = time.perf_counter()  # stopped: retrieval ended now
            self.render.close(terminate=self._stopping)
        self.metrics.set_render_pool(self.render.workers, self.render.start_method, self.render.restarts,
                                     self.render.recycles)
        counters = self.retrieval.sessions.counters
        self.glyphs.log()
        return RunRecords(
            metrics=self.metrics,
            tool_calls=counters.tool_calls, sessions_opened=counters.sessions_opened,
            peak_batches=self.retrieval.batch_gauge.peak, decks=self.decks.build_metrics(),
            interrupted=self._stopping,
            unreachable=None if self._unreachable is None else (self._unreachable.error_type,
                                                                self._unreachable.message),
            carried_charts=self.carried_charts, carried_decks=self.carried_decks,
            warnings=tuple(self.glyphs.warnings()),
        )

    # -- taking the plan on, a merchant at a time ------------------------------------------------------
    def _take_on(self) -> None:
        """Take merchants from the plan while there is room: memory holds what is in flight, not the run."""
        limit = window(self.config, self.render.workers)
        while self._merchants is not None and not self._stopping and len(self._charts) < limit:
            merchant = next(self._merchants, None)
            if merchant is None:
                self._merchants = None
                return
            self._take(merchant)

    def _take(self, merchant: PlannedMerchant) -> None:
        carried = self.request.carried
        decks_settled = carried is not None and carried.decks_settled(merchant.index)
        finals: list[TrackedChart] = []
        if carried is not None:
            need_data = bool(self.decks.formats) and not decks_settled
            finals = [chart for position, job in zip(merchant.positions, merchant.jobs, strict=True)
                      if (chart := carried.chart(position, job, need_data)) is not None]
        self.carried_charts += len(finals)
        batches_planned = batch_count(len(merchant.jobs), self.plan.batch_size)
        if len(finals) == len(merchant.jobs) and (decks_settled or not self.decks.formats):
            self.carried_decks += decks_settled
            self._batches_done += batches_planned
            self._charts.count_only(finals)
            return  # everything final before this process began
        for chart in finals:
            self._charts.add_final(chart)
        skip = frozenset(chart.position for chart in finals)
        self.decks.add(merchant.token, merchant.index, merchant.jobs, len(merchant.jobs) - len(finals), merchant.name)
        batches = list(self.plan.batches_of(merchant, skip))
        self._batches_done += batches_planned - len(batches)  # all carried over
        for batch in batches:
            self._charts.add(batch)
            self._batches_running += 1
            self.retrieval.submit(batch)

    # -- the loop -----------------------------------------------------------------------------------
    @property
    def _stopping(self) -> bool:
        return self._stop_deadline is not None

    def _finished(self) -> bool:
        if self._stopping:
            return self.render.in_flight() == 0 or time.monotonic() > (self._stop_deadline or 0)
        # Wait for the batch records too: a batch's last chart can fail before its batch is reported.
        return self._merchants is None and self._charts.count(ChartState.RETRIEVING, ChartState.WAITING,
                                                              ChartState.RENDERING) == 0 \
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
                self.journal.tick()
                self._take_on()
                self._fill()  # places freed; a supervisor that lost its cluster fails what it is handed
            elif self.decks.next_due() is not None:  # a merchant's last chart may have failed, which frees no worker
                self._fill()
            try:
                self._handle(self._events.get(timeout=TICK_SECONDS))
            except queue.Empty:
                pass
            self._on_progress(self.progress())
        if self._stopping:
            for chart in self._charts:
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
        self._stop_deadline = time.monotonic() + RENDER_STOP_GRACE_SECONDS
        self.retrieval.cancel(lambda: logger.warning("stop requested: no new work; unfinished charts will be "
                                                     "reported as cancelled"))
        self.render.cancel_pending()

    def progress(self) -> Progress:
        # The render stage's count includes decks: only as many charts as it holds are rendering.
        handed_over = self._charts.count(ChartState.RENDERING)
        rendering = min(self.render.rendering(), handed_over)
        done, failed = self._charts.count(ChartState.OK), self._charts.count(ChartState.FAILED)
        cancelled = self._charts.count(ChartState.CANCELLED)
        retrieving = self._charts.count(ChartState.RETRIEVING)
        queued = self._charts.count(ChartState.WAITING) + handed_over - rendering
        # Charts not taken on yet are still to retrieve; once stopping, they will be cancelled.
        rest = max(0, self._charts_total - done - failed - cancelled - queued - rendering - retrieving)
        if self._stopping:
            cancelled += rest
        else:
            retrieving += rest
        return Progress(
            batches_total=self._batches_total, batches_done=self._batches_done,
            charts_total=self._charts_total, retrieving=retrieving, queued=queued, rendering=rendering,
            done=done, failed=failed, cancelled=cancelled,
            running=tuple(f"{b.batch_id} {b.merchant}: {', '.join(j.spec.id for j in b.jobs)}"
                          for b in self.retrieval.running()),
        )

    # -- retrieval -----------------------------------------------------------------------------------
    def _on_retrieval(self, retrieval: Retrieval) -> None:
        chart = self._charts.get(retrieval.job.key)
        if chart is None or chart.state is not ChartState.RETRIEVING or self._stopping:
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
        self._move(chart, Move.DATA_ARRIVED)
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
            message = detail(str(error))
            self._record_batch(batch, failed_batch(batch, error_type, message))
            for job in batch.jobs:
                if (chart := self._charts.get(job.key)) is not None:
                    self._fail(chart, error_type, f"batch failed: {message}")
            return
        result = future.result()
        self._record_batch(batch, result)
        if result.held and (self._stopping or not self.retrieval.fall_back(result.held, batch.batch_id)):
            for retrieval in result.held:
                self._on_retrieval(retrieval)
        elif result.held:
            self.metrics.sequential_fallbacks += 1

    def _record_batch(self, batch: Batch, result: BatchResult) -> None:
        self._batches_done += 1
        self.journal.batch(batch.number, batch_row(result))
        self.metrics.record_batch(result)
        if self._merchants is None and self._batches_running == 0:
            self.metrics.retrieval_finished = time.perf_counter()
        self._take_on()

    # -- rendering -----------------------------------------------------------------------------------
    def _fill(self) -> None:
        """Hand due decks, then waiting charts, to the supervisor while it has room."""
        while (merchant := self.decks.next_due()) is not None and not self._stopping:
            charts = self._charts.of(merchant)
            if self.render.capacity() == 0 and any(c.state is ChartState.OK for c in charts):
                break  # a deck with charts to show waits for a worker; one without is settled here
            deck = self.decks.task(merchant, {c.job.spec.id: c.data for c in charts if c.state is ChartState.OK},
                                   {c.job.spec.id: f"{c.error_type}: {c.error}" for c in charts if c.error})
            if deck is not None:
                self.render.submit(deck, self._put_render_done)
            self._record_decks()
        while self._waiting and not self._stopping and self.render.capacity() > 0:
            chart = self._waiting.popleft()
            if chart.state is ChartState.WAITING and chart.data is not None:
                shown = shown_data(chart.job.spec, chart.data, chart.job.start_date, chart.job.end_date)
                self._move(chart, Move.HANDED_OVER)
                self.render.submit(RenderTask(chart.job, shown, self.config.png_compress_level), self._put_render_done)
                self.metrics.render_submitted(time.perf_counter(), self.render.in_flight(), self.render.workers)

    def _put_render_done(self, future: concurrent.futures.Future[Output]) -> None:
        """Called by the render stage, on any thread: only puts the event on the queue."""
        self._events.put(RenderDone(future))

    def _on_render_done(self, future: concurrent.futures.Future[Output]) -> None:
        settled = self.render.settle(future)
        self.metrics.render_finished = time.perf_counter()
        match settled:
            case Rendered(key, BuiltDeck() as deck):
                self.glyphs.add(deck.missing_glyphs)
                self.decks.built(key[0], deck)  # a document it could not write is counted from its row
                self._record_decks()
            case Rendered(key, RenderedChart() as rendered):
                self.glyphs.add(rendered.missing_glyphs)
                if (chart := self._charts.get(key)) is not None:
                    self._write(chart, rendered)
            case RenderFailed():
                self._render_failed(settled)
            case GoAgain(key) if key[1] == DECK:
                if not self._stopping:
                    self.decks.again(key[0])
            case GoAgain(key):
                if (chart := self._charts.get(key)) is not None:
                    self._handed_back(chart)
        self._fill()  # a place is free

    def _handed_back(self, chart: TrackedChart) -> None:
        if chart.state is ChartState.RENDERING:
            self._move(chart, Move.HANDED_BACK)
            self._waiting.appendleft(chart)  # first in line; nothing is handed over once stopping

    def _render_failed(self, failed: RenderFailed) -> None:
        merchant, what = failed.key
        if what != DECK:
            if (chart := self._charts.get(failed.key)) is not None:
                self._fail(chart, failed.error_type, failed.message)
            return
        logger.warning("deck for {} failed ({}): {}", merchant, failed.error_type, failed.message)
        self.decks.failed(merchant, ErrorType.DECK_ERROR, failed.message)
        self._record_decks()

    def _write(self, chart: TrackedChart, rendered: RenderedChart) -> None:
        if chart.state is not ChartState.RENDERING:
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
        self._move(chart, Move.WRITTEN)

    # -- final states, and the journal ---------------------------------------------------------------
    def _move(self, chart: TrackedChart, move: Move) -> None:
        if self._charts.move(chart, move) not in FINAL:
            return
        self.journal.chart(chart.position, flat_row(chart_row(chart, self.request.run_id)))
        merchant = chart.job.merchant
        if self._stopping:
            return
        self.decks.chart_final(merchant)
        if not self.decks.formats and self._charts.holds_all_final(merchant):
            self._forget(merchant)

    def _record_decks(self) -> None:
        """Journal the decks settled since the last call, and forget their merchants."""
        for merchant, index, rows in self.decks.take_settled():
            self.journal.decks(index, deck_rows(rows))
            if self._charts.holds_all_final(merchant):
                self._forget(merchant)

    def _forget(self, merchant: str) -> None:
        self._charts.forget(merchant)
        self.decks.forget(merchant)
        self._take_on()

    def _fail(self, chart: TrackedChart, error_type: ErrorType, message: str, quiet: bool = False) -> None:
        """A chart's final failure: recorded once, and said once in the log."""
        if chart.final:
            return
        chart.error_type, chart.error = error_type, message
        if error_type is ErrorType.CANCELLED:  # not an error: counted as cancelled (runner.metrics)
            self._move(chart, Move.CANCELLED)
            return
        if not quiet:
            logger.bind(batch=chart.batch_id, merchant=chart.job.merchant, chart=chart.job.spec.id,
                        error_type=error_type).warning("{} {} failed ({}): {}", chart.job.merchant, chart.job.spec.id,
                                                       error_type, message)
        self._move(chart, Move.FAILED)

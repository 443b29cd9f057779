"""What the coordinator ends with: the report's chart and batch rows and the run's metrics, made
from its working records once the loop is over (runner.report turns them into the report)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from runner.chart_states import FINAL, ChartBook, ChartState, TrackedChart
from runner.clock import iso_time
from runner.decks.book import DeckBook, DeckResult
from runner.errors import ErrorType
from runner.metrics import RunMetrics
from runner.records import Batch, BatchResult
from runner.render.backend import RenderSupervisor
from runner.report import ChartResult
from runner.retrieval.stage import RetrievalStage
from runner.status import BatchStatus, ChartStatus

HOST = socket.gethostname()


@dataclass(frozen=True)
class RunRecords:
    """Everything the coordinator ended with: the rows of the report, before it is written."""

    charts: tuple[ChartResult, ...]
    batches: tuple[BatchResult, ...]
    metrics: dict[str, Any]
    interrupted: bool
    server_unreachable: bool
    decks: tuple[DeckResult, ...] = ()


def chart_row(chart: TrackedChart, run_id: str) -> ChartResult:
    """The chart's row; one that never reached a final state (the loop ended first) is cancelled."""
    out = chart.rendered if chart.state is ChartState.OK else None
    queue_ms = total_ms = None
    if out is not None and chart.queued_at is not None and chart.finished_at is not None:
        in_render = (chart.finished_at - chart.queued_at) * 1000
        queue_ms = round(max(0.0, in_render - out.render_ms), 1)
        total_ms = round((chart.retrieve_ms or 0.0) + in_render, 1)
    job = chart.job
    return ChartResult(
        run_id=run_id, merchant=job.merchant, chart_id=job.spec.id, title=job.spec.title,
        status=FINAL.get(chart.state, ChartStatus.CANCELLED), error_type=chart.error_type, error=chart.error,
        batch_id=chart.batch_id, attempts=chart.attempts,
        retrieve_ms=None if chart.retrieve_ms is None else round(chart.retrieve_ms, 1),
        queue_ms=queue_ms, render_ms=out.render_ms if out else None, total_ms=total_ms,
        output=job.output if out else None, bytes=chart.size if out else None,
        sha256=out.sha256 if out else None, worker_pid=out.worker_pid if out and not out.cached else None,
        data_output=job.data_output if chart.data_written else None,
        paragraph=chart.data.paragraph if chart.data else None,
        started_at=iso_time(chart.started_wall), finished_at=iso_time(chart.ended_wall),
        cached=bool(out and out.cached),
        worker=None if out is None or out.cached else out.worker or f"{HOST}:{out.worker_pid}",
    )


def failed_batch(batch: Batch, error_type: ErrorType, message: str) -> BatchResult:
    """The row of a batch that crashed as a whole."""
    return BatchResult(batch.batch_id, batch.merchant, batch.chart_ids, BatchStatus.FAILED, 1, "", 0.0,
                       error_type=error_type, error=message)


def batch_rows(batches: tuple[Batch, ...], ended: dict[str, BatchResult], charts: ChartBook,
               interrupted: bool) -> tuple[BatchResult, ...]:
    """Every planned batch's row: a batch that never ran (interrupted, or the server was
    unreachable) is listed too, with its first chart's reason."""
    rows = []
    for batch in batches:
        first = charts[batch.jobs[0].key]
        status = BatchStatus.CANCELLED if interrupted else BatchStatus.FAILED
        rows.append(ended.get(batch.batch_id) or BatchResult(
            batch.batch_id, batch.merchant, batch.chart_ids, status, 0, "", 0.0, error_type=first.error_type,
            error=first.error))
    return tuple(rows)


def run_metrics(metrics: RunMetrics, batches: tuple[BatchResult, ...], render: RenderSupervisor,
                retrieval: RetrievalStage, decks: DeckBook) -> dict[str, Any]:
    """The report's `metrics`: what the loop counted, with the batches' statuses, the render
    stage's pool, the sessions' counters and the decks'."""
    metrics.count_batches(batch.status for batch in batches)
    metrics.set_render_pool(render.workers, render.start_method, render.restarts, render.recycles)
    counters = retrieval.sessions.counters
    report = metrics.as_report(counters.tool_calls, counters.sessions_opened, retrieval.batch_gauge.peak)
    report["decks"] = decks.metrics()
    return report

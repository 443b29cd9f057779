"""A run's report made from what the coordinator recorded: the chart and batch rows and the run's
metrics, made from the coordinator's working records once its loop is over (RunRecords); the
report around them (build_report; or, for a run that ended before planning, from what was asked);
and the closing block of metrics the log ends with. runner.report holds the report's contract
(its columns, counts and writing)."""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger

from runner.chart_states import FINAL, ChartBook, ChartState, TrackedChart
from runner.charts import ChartSpec
from runner.clock import iso_time
from runner.config import RunnerConfig
from runner.decks.book import DeckBook, DeckResult
from runner.errors import ErrorType
from runner.metrics import RunMetrics
from runner.records import Batch, BatchResult
from runner.render.supervisor import RenderSupervisor
from runner.report import (
    SCHEMA_VERSION,
    ChartResult,
    batch_row,
    chart_counts,
    environment,
    errors_by_type,
    merchant_rows,
    with_merchant_names,
)
from runner.request import JobInputs
from runner.retrieval.stage import RetrievalStage
from runner.status import BatchStatus, ChartStatus, DeckStatus, ExitCode


def junit_failed(report: dict[str, Any], message: str) -> None:
    """The JUnit file could not be written. The charts are what they are and the report is still
    written, but a CI job must not take an old JUnit file for this run's: an ERROR line, the
    reason in run.error, and exit 3 where the run would have passed or partly passed (4 and 130
    say more, and stay)."""
    logger.error("{}", message)
    run = report["run"]
    run["error"] = f"{run['error']}; {message}" if run["error"] else message
    if run["exit_code"] in (ExitCode.OK, ExitCode.FAILED):
        run["exit_code"] = ExitCode.INTERNAL


def unplanned_charts(run_id: str, merchants: tuple[str, ...], charts: tuple[ChartSpec, ...], interrupted: bool,
                     reason: str | None, only: tuple[tuple[str, str], ...] | None = None) -> list[ChartResult]:
    """The charts of a run that ended before planning them: cancelled, or failed with the reason."""
    status = ChartStatus.CANCELLED if interrupted or reason is None else ChartStatus.FAILED
    error_type = ErrorType.CANCELLED if status is ChartStatus.CANCELLED else ErrorType.SERVER_UNAVAILABLE
    error = "the run was interrupted before this chart was planned" if status is ChartStatus.CANCELLED else reason
    empty: dict[str, Any] = dict.fromkeys(("batch_id", "retrieve_ms", "queue_ms", "render_ms", "total_ms", "output",
                                           "bytes", "sha256", "worker_pid", "paragraph", "data_output"))
    return [ChartResult(run_id=run_id, merchant=merchant, chart_id=spec.id, title=spec.title, status=status,
                        error_type=error_type, error=error, attempts=0, **empty)
            for merchant in merchants for spec in charts if only is None or (merchant, spec.id) in only]


def _stop_error(stopped_by: str | None, reason: str | None, planned: bool) -> str:
    """run.error of a stopped run: always what stopped it, and what else is known."""
    cause = f"stopped by {stopped_by}" if stopped_by else "stopped"
    if reason:
        return f"{cause}; {reason}"
    return cause if planned else f"{cause} before the server's merchant list arrived: no chart was planned"


def build_report(config: RunnerConfig, run_id: str, run_dir: Path, inputs: JobInputs,
                 merchants: tuple[str, ...], started_at: datetime, finished_at: datetime, wall_ms: float,
                 result: Any, unreachable_reason: str | None, stopped_by: str | None,
                 names: dict[str, str] | None = None) -> dict[str, Any]:
    """`stopped_by`: what asked the run to stop (a signal, the deadline), or None; `names`: the
    merchants' display names (each row's merchant_name; the token where none is known)."""
    interrupted = stopped_by is not None or bool(result and result.interrupted)
    unreachable = unreachable_reason is not None or bool(result and result.server_unreachable)
    if result is not None:
        charts = [asdict(c) for c in result.charts]
    else:  # stopped, or the server failed, before any chart was planned: still list each one asked for
        unplanned = unplanned_charts(run_id, merchants, inputs.charts, interrupted, unreachable_reason, inputs.only)
        charts = [asdict(c) for c in unplanned]
    if interrupted:
        unreachable_reason = _stop_error(stopped_by, unreachable_reason, result is not None or bool(merchants))
    decks = [asdict(d) for d in result.decks] if result else [
        asdict(DeckResult(merchant, fmt, DeckStatus.CANCELLED if interrupted else DeckStatus.FAILED, None, None, None,
                          None, len(inputs.charts), None,
                          ErrorType.CANCELLED if interrupted else ErrorType.DECK_ERROR, "no chart was planned"))
        for merchant in merchants for fmt in config.deck_formats]
    metrics = {**(result.metrics if result else RunMetrics().as_report(0, 0, 0)),
               "errors_by_type": errors_by_type(charts, decks)}
    run = {
        "run_id": run_id,
        "started_at": iso_time(started_at),
        "finished_at": iso_time(finished_at),
        **chart_counts(charts, decks, interrupted, unreachable),  # status, exit_code, charts_*
        "retrieval_mode": config.retrieval_mode,
        "merchants": len(merchants),
        "wall_ms": round(wall_ms, 1),
        "output_dir": str(run_dir),
        "start_date": inputs.start_date,
        "end_date": inputs.end_date,
        "dates_given": dict(inputs.dates_given),
        "pack": inputs.pack,
        "reruns": inputs.reruns,
        "error": unreachable_reason,
    }
    return with_merchant_names({
        "schema_version": SCHEMA_VERSION,
        "run": run,
        "config": config.effective(),
        "environment": environment(),
        "metrics": metrics,
        "batches": [batch_row(b) for b in result.batches] if result else [],
        "charts": charts,
        "decks": decks,
        "merchants": merchant_rows(charts, decks, config.deck_formats),
    }, names or {})


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def log_closing_block(report: dict[str, Any]) -> None:
    run, metrics = report["run"], report["metrics"]
    retrieval, render, tokens = metrics["retrieval"], metrics["render"], metrics["tokens"]
    errors = ", ".join(f"{k}={v}" for k, v in metrics["errors_by_type"].items()) or "none"
    lines = [
        "=== Concurrency Metrics ===",
        f"status: {run['status']} (exit {run['exit_code']}), total time {run['wall_ms'] / 1000:.2f}s",
        f"batches: {retrieval['batches_total']} ({retrieval['batches_ok']} ok, {retrieval['batches_failed']} failed,"
        f" {retrieval['batches_cancelled']} cancelled), peak concurrent {retrieval['peak_concurrent_batches']},"
        f" retries {retrieval['batch_retries']}, sequential fallbacks {retrieval['sequential_fallbacks']},"
        f" retrieval wall {retrieval['wall_ms']:.0f} ms",
        f"MCP: {retrieval['tool_calls']} tool calls over {retrieval['mcp_sessions_opened']} session(s)",
        f"charts: {run['charts_ok']} ok, {run['charts_failed']} failed, {run['charts_cancelled']} cancelled"
        f" of {run['charts_total']}",
        f"render: {render['workers']} worker(s) ({render['start_method']}), p50 {_ms(render['p50_render_ms'])},"
        f" p95 {_ms(render['p95_render_ms'])}, utilization {render['utilization'] or 'n/a'}",
        f"tokens: {tokens['input_tokens']} in, {tokens['output_tokens']} out,"
        f" max batch context {tokens['max_batch_context_tokens']},"
        f" model API retries {retrieval.get('llm_retries', 0)}",
        f"errors by type: {errors}",
    ]
    for line in lines:
        logger.info(line)


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

"""A run's report, made from what the coordinator recorded (or, for a run that ended before
planning, from what was asked), and the closing block of metrics the log ends with."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger

from runner.charts import ChartSpec
from runner.clock import iso_time
from runner.config import RunnerConfig
from runner.decks.book import DeckResult
from runner.errors import ErrorType
from runner.metrics import RunMetrics
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
from runner.status import ChartStatus, DeckStatus, ExitCode


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

"""The run's report, assembled in one place: the rows walked from the plan and the journal
(JournalSections: each chart's latest outcome, a merchant at a time, never the whole run in
memory), their counts (Tally), the report around them (report_head), and the closing block of
metrics the log ends with. The coordinator makes each chart's and batch's row as it becomes final
(chart_row, failed_batch) and journals it. runner.report holds the report's contract (its columns,
counts and writing)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from runner.chart_states import FINAL, ChartState, TrackedChart
from runner.clock import iso_time
from runner.config import RunnerConfig
from runner.decks.book import DeckResult
from runner.errors import ErrorType, ReportWriteError
from runner.journal import JournalIndex, JournalReader, read_journal
from runner.junit import write_junit
from runner.merchants import merchant_name
from runner.metrics import RunMetrics, open_fds, peak_rss_mb
from runner.outcomes import MerchantOutcome, SpooledOutcomes, Tally, section_rows, spooled
from runner.planning import Plan, PlannedMerchant
from runner.records import Batch, BatchResult, ChartJob
from runner.report import (
    BATCH_COLUMNS,
    CHART_COLUMNS,
    SCHEMA_VERSION,
    ChartResult,
    batch_row,
    deck_status_counts,
    environment,
    flat_row,
    merchant_rows,
    write_report_sections,
)
from runner.request import JobInputs
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


def _stop_error(stopped_by: str | None, reason: str | None, planned: bool) -> str:
    """run.error of a stopped run: always what stopped it, and what else is known."""
    cause = f"stopped by {stopped_by}" if stopped_by else "stopped"
    if reason:
        return f"{cause}; {reason}"
    return cause if planned else f"{cause} before the server's merchant list arrived: no chart was planned"


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




def deck_rows(rows: tuple[DeckResult, ...]) -> list[dict[str, Any]]:
    """A merchant's deck rows as the journal keeps them."""
    return [flat_row(row) for row in rows]


@dataclass(frozen=True)
class RunRecords:
    """What the coordinator ended with, beside the outcomes it journaled: its counters, and why it stopped."""

    metrics: RunMetrics
    tool_calls: int
    sessions_opened: int
    peak_batches: int
    decks: dict[str, object]  # what the deck builds cost
    interrupted: bool
    unreachable: tuple[ErrorType, str] | None  # the server could not be reached: the type and why
    carried_charts: int = 0  # a resumed run's charts final before it began
    carried_decks: int = 0
    warnings: tuple[dict[str, Any], ...] = ()  # run.warnings: characters no font has (runner.fonts.GlyphReport)


@dataclass(frozen=True)
class Missing:
    """What a chart, batch or deck with no outcome in the journal is reported as: the run stopped
    first, or could not reach its server."""

    status: ChartStatus
    error_type: ErrorType
    error: str
    deck_status: DeckStatus
    deck_error_type: ErrorType
    deck_error: str

    @classmethod
    def of(cls, interrupted: bool, unreachable: tuple[ErrorType, str] | None, planned: bool = True) -> Missing:
        if interrupted:
            return cls(ChartStatus.CANCELLED, ErrorType.CANCELLED,
                       "the run was interrupted before this chart finished" if planned
                       else "the run was interrupted before this chart was planned",
                       DeckStatus.CANCELLED, ErrorType.CANCELLED, "the run stopped before this deck was built")
        if unreachable is not None:
            return cls(ChartStatus.FAILED, unreachable[0], unreachable[1], DeckStatus.FAILED, ErrorType.DECK_ERROR,
                       "no chart of this merchant has data" if planned else "no chart was planned")
        reason = "the run ended without an outcome for this chart"  # a bug: still, every chart has its row
        return cls(ChartStatus.FAILED, ErrorType.INTERNAL, reason, DeckStatus.FAILED, ErrorType.INTERNAL, reason)


def valid_chart_row(row: Any, job: ChartJob) -> bool:
    """A journal's chart row is used only if it is one the runner wrote for this chart."""
    return isinstance(row, dict) and _CHART_KEYS <= row.keys() and row["merchant"] == job.merchant \
        and row["chart_id"] == job.spec.id and row["status"] in _CHART_STATUSES


_CHART_KEYS = frozenset(CHART_COLUMNS) - {"merchant_name"}
_CHART_STATUSES = frozenset(status.value for status in ChartStatus)
_DECK_KEYS = frozenset(f.name for f in fields(DeckResult))
_BATCH_KEYS = frozenset(BATCH_COLUMNS)


class JournalSections:
    """The report's rows, from the plan and the journal: each chart's latest outcome, or what
    `missing` says for one with none. Implements runner.report.Sections."""

    def __init__(self, plan: Plan, index: JournalIndex, missing: Missing, run_id: str,
                 formats: tuple[str, ...], batches_planned: bool = True) -> None:
        self.plan, self.index, self.missing, self.run_id, self.formats = plan, index, missing, run_id, formats
        self.batches_planned = batches_planned  # False: the run ended before any batch was made: none is listed
        self._spool: SpooledOutcomes | None = None

    def rows(self, section: str) -> Iterator[dict[str, Any]]:
        return section_rows(self.walk(), section)

    @contextmanager
    def spooled(self) -> Iterator[JournalSections]:
        """Walk the journal once into a temporary file of the finished rows, which every later walk
        reads instead (the tally, each section, the CSV, the JUnit file): several times cheaper."""
        with spooled(self._walked(), self.plan.run_dir) as spool:
            self._spool = spool
            try:
                yield self
            finally:
                self._spool = None

    def walk(self) -> Iterator[MerchantOutcome]:
        yield from (self._spool.walk() if self._spool is not None else self._walked())

    def _walked(self) -> Iterator[MerchantOutcome]:
        with self.index.reader() as reader:
            for merchant in self.plan.merchants(calls=False):
                if merchant.jobs:
                    yield self._outcome(merchant, reader)

    def _outcome(self, merchant: PlannedMerchant, reader: JournalReader) -> MerchantOutcome:
        name = merchant_name(merchant.name, merchant.token)
        charts = []
        for position, job in zip(merchant.positions, merchant.jobs, strict=True):
            row = reader.chart(position)
            charts.append({**({key: row.get(key) for key in CHART_COLUMNS} if valid_chart_row(row, job)
                              else flat_row(self._missing_chart(job))), "merchant_name": name})
        batches = []
        for batch in self.plan.batches_of(merchant):
            row = reader.batch(batch.number)
            if row is None and not self.batches_planned:
                continue
            if not (isinstance(row, dict) and _BATCH_KEYS <= row.keys() and row["batch_id"] == batch.batch_id
                    and row["merchant"] == merchant.token and row["status"] in {s.value for s in BatchStatus}):
                row = batch_row(BatchResult(batch.batch_id, merchant.token, batch.chart_ids,
                                            BatchStatus.CANCELLED if self.missing.status is ChartStatus.CANCELLED
                                            else BatchStatus.FAILED, 0, "", 0.0, error_type=self.missing.error_type,
                                            error=self.missing.error))
            batches.append({**{key: row[key] for key in BATCH_COLUMNS}, "merchant_name": name})
        journaled = reader.deck_rows(merchant.index)
        by_format = {row["format"]: row for row in journaled if isinstance(row, dict) and _DECK_KEYS <= row.keys()
                     and row["merchant"] == merchant.token} if isinstance(journaled, list) else {}
        decks = [{**({key: by_format[fmt][key] for key in _DECK_KEYS} if fmt in by_format else flat_row(DeckResult(
            merchant.token, fmt, self.missing.deck_status, None, None, None, None, len(merchant.jobs), None,
            self.missing.deck_error_type, self.missing.deck_error))), "merchant_name": name} for fmt in self.formats]
        decks = [{key: row[key] for key in (*(f.name for f in fields(DeckResult)), "merchant_name")} for row in decks]
        (row,) = merchant_rows(charts, decks, self.formats)
        return MerchantOutcome(batches, charts, decks, {**row, "merchant_name": name})

    def _missing_chart(self, job: ChartJob) -> ChartResult:
        return ChartResult(run_id=self.run_id, merchant=job.merchant, chart_id=job.spec.id, title=job.spec.title,
                           status=self.missing.status, error_type=self.missing.error_type, error=self.missing.error,
                           batch_id=None, attempts=0, retrieve_ms=None, queue_ms=None, render_ms=None, total_ms=None,
                           output=None, bytes=None, sha256=None, worker_pid=None, paragraph=None, data_output=None)


def report_head(config: RunnerConfig, run_id: str, run_dir: Path, inputs: JobInputs, merchants: int,
                started_at: datetime, finished_at: datetime, wall_ms: float, records: RunRecords | None,
                tally: Tally, error: str | None, stopped_by: str | None) -> dict[str, Any]:
    """The report but its rows: `run`, `config`, `environment` and `metrics`. `stopped_by`: what
    asked the run to stop (a signal, the deadline), or None; `error`: why it could not reach its server."""
    interrupted = stopped_by is not None or bool(records and records.interrupted)
    unreachable = error is not None or bool(records and records.unreachable)
    if records is not None and records.unreachable and error is None:
        error = records.unreachable[1]
    if interrupted:
        error = _stop_error(stopped_by, error, records is not None or bool(merchants))
    run_metrics = records.metrics if records else RunMetrics()
    run_metrics.count_batches(tally.batches.elements())
    metrics = run_metrics.as_report(records.tool_calls if records else 0, records.sessions_opened if records else 0,
                                    records.peak_batches if records else 0)
    metrics["decks"] = {**deck_status_counts(tally.decks), **(records.decks if records else
                                                            {"p50_build_ms": None, "cpu_ms": 0.0})}
    metrics["errors_by_type"] = dict(sorted(tally.errors.items()))
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {
            "run_id": run_id,
            "started_at": iso_time(started_at),
            "finished_at": iso_time(finished_at),
            **tally.run_counts(interrupted, unreachable),  # status, exit_code, charts_*
            "retrieval_mode": config.retrieval_mode,
            "merchants": merchants,
            "wall_ms": round(wall_ms, 1),
            "output_dir": str(run_dir),
            "start_date": inputs.start_date,
            "end_date": inputs.end_date,
            "dates_given": dict(inputs.dates_given),
            "pack": inputs.pack,
            "reruns": inputs.reruns,
            "error": error,
            "warnings": list(records.warnings) if records else [],
        },
        "config": config.effective(),
        "environment": environment(),
        "metrics": metrics,
    }


@dataclass(frozen=True)
class ReportInputs:
    """What the report of a run is made from, beside its journal."""

    config: RunnerConfig
    run_id: str
    run_dir: Path
    inputs: JobInputs
    plan: Plan | None  # None: the run ended before its merchants were known
    started_at: datetime
    wall_ms: float
    records: RunRecords | None  # None: the coordinator never ran
    unreachable_reason: str | None  # the server could not list merchants or tools
    stopped_by: str | None  # what asked the run to stop (a signal, the deadline)


def write_run_report(what: ReportInputs, extra: dict[str, Any], metrics: dict[str, dict[str, Any]],
                     fds_at_start: int) -> tuple[Path, dict[str, Any]]:
    """Write the run's report (and CSV, and JUnit file) from its plan and journal, row by row;
    `extra`: keys for `run`; `metrics`: sections for `metrics`, merged over what is there;
    `fds_at_start`: the descriptors open when the run began (metrics.process).
    Returns the path and the report but its rows (they are on disk only)."""
    config, records, inputs = what.config, what.records, what.inputs
    plan = what.plan or Plan(what.run_dir, inputs.charts, inputs.start_date, inputs.end_date, config.batch_size,
                             merchants_given=tuple((token, "") for token in inputs.merchants))
    charts, batches, merchants = plan.counts
    index = read_journal(what.run_dir, charts, batches, merchants)
    interrupted = what.stopped_by is not None or bool(records and records.interrupted)
    unreachable = records.unreachable if records is not None and records.unreachable else (
        (ErrorType.SERVER_UNAVAILABLE, what.unreachable_reason) if what.unreachable_reason else None)
    missing = Missing.of(interrupted, unreachable, planned=records is not None)
    sections = JournalSections(plan, index, missing, what.run_id, config.deck_formats, records is not None)
    with sections.spooled():
        tally = Tally.of(sections)
        # The process's figures once the rows are walked: the report's own making is counted too.
        process = {"coordinator_peak_rss_mb": peak_rss_mb(), "open_fds_start": fds_at_start, "open_fds_end": open_fds()}
        return _write_from(what, sections, tally, merchants, extra, {**metrics, "process": process}, index)


def _write_from(what: ReportInputs, sections: JournalSections, tally: Tally, merchants: int, extra: dict[str, Any],
                metrics: dict[str, dict[str, Any]], index: JournalIndex) -> tuple[Path, dict[str, Any]]:
    config, records, inputs = what.config, what.records, what.inputs
    head = report_head(config, what.run_id, what.run_dir, inputs, merchants, what.started_at, datetime.now(UTC),
                       what.wall_ms, records, tally, what.unreachable_reason, what.stopped_by)
    head["run"].update(extra, junit_xml=None, shard=inputs.shard, resumed=_resumed(index, records))
    for name, section in metrics.items():
        head["metrics"][name] = {**head["metrics"].get(name, {}), **section}
    if config.junit_xml:  # before the report: a report on disk means everything was written
        try:
            junit = Path(config.junit_xml).expanduser().absolute()
            write_junit(junit, head, sections)
            head["run"]["junit_xml"] = str(junit)  # where a merge finds it again
        except ReportWriteError as exc:
            junit_failed(head, str(exc))
    return write_report_sections(what.run_dir, head, sections, inputs.write_csv), head


def _resumed(index: JournalIndex, records: RunRecords | None) -> dict[str, Any] | None:
    """run.resumed: how many times the run was resumed, and what this part carried over."""
    if not index.resumed:
        return None
    return {"times": len(index.resumed), "at": [entry.get("at") for entry in index.resumed],
            "charts_carried_over": records.carried_charts if records else 0,
            "decks_carried_over": records.carried_decks if records else 0}

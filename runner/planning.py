"""The plan of a run: every chart asked for, as one job each, split into batches of a merchant's charts."""

from __future__ import annotations

import json
from pathlib import Path

from runner import sql
from runner.charts import ChartSpec
from runner.errors import UsageError
from runner.files import safe_part
from runner.records import Batch, ChartJob, ToolCall

# One run's bookkeeping is about 10 KB a chart: this keeps the coordinator well under 500 MB.
# Larger jobs are split into several runs.
MAX_CHARTS_PER_RUN = 20_000


def check_run_size(total: int, merchants: int, charts: int) -> None:
    if total > MAX_CHARTS_PER_RUN:
        raise UsageError(f"the job asks for {total:,} charts ({merchants:,} merchants x {charts} charts); a run "
                         f"makes at most {MAX_CHARTS_PER_RUN:,}: split the merchants into several runs")


def call_for(spec: ChartSpec, merchant: str, start_date: str, end_date: str,
             query_tool: sql.QueryTool | None) -> ToolCall | None:
    """The chart's MCP call; None for a SQL chart when no query tool was resolved (agent mode,
    where the model writes its own calls)."""
    values: dict[str, sql.Param] = {"merchant_token": merchant, "start_date": spec.retrieval_start(start_date),
                                    "end_date": end_date,
                                    **dict(spec.params)}
    if spec.sql:
        if query_tool is None:
            return None
        return ToolCall(query_tool.name, json.dumps(query_tool.arguments(spec.sql, values)))
    return ToolCall(spec.tool, json.dumps(sql.fill_arguments(dict(spec.arguments), values)))


def plan_batches(
    merchants: list[str],
    charts: tuple[ChartSpec, ...],
    start_date: str,
    end_date: str,
    run_dir: Path,
    batch_size: int,
    query_tool: sql.QueryTool | None = None,
    only: tuple[tuple[str, str], ...] | None = None,
) -> tuple[Batch, ...]:
    """Split each merchant's charts (or only the given pairs) into batches of `batch_size`,
    numbered across the run."""
    batches: list[Batch] = []
    wanted = None if only is None else set(only)
    for merchant in merchants:
        folder = run_dir / safe_part(merchant)
        jobs = [
            ChartJob(merchant, spec, start_date, end_date, str(folder / f"{safe_part(spec.id)}.png"),
                     call_for(spec, merchant, start_date, end_date, query_tool))
            for spec in charts if wanted is None or (merchant, spec.id) in wanted
        ]
        for i in range(0, len(jobs), batch_size):
            batch_id = f"batch-{len(batches) + 1:03d}"
            batches.append(Batch(batch_id, merchant, tuple(jobs[i : i + batch_size])))
    return tuple(batches)

"""Direct mode: each chart's data comes from the one MCP tool its spec names."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from runner.config import RunnerConfig
from runner.errors import ChartError, ErrorType, one_line
from runner.kinds import paragraphs
from runner.kinds.window import shown_or_empty
from runner.records import Batch, BatchResult, ChartData, ChartJob, Retrieval
from runner.retrieval.parse import chart_data_from_json
from runner.retrieval.pivot import chart_payload, rows_of
from runner.retrieval.results import decode_tool_result
from runner.retrieval.retry import RetryPolicy
from runner.retrieval.sessions import Slot

Emit = Callable[[Retrieval], None]


def chart_data(job: ChartJob, result: Any) -> ChartData:
    """A tool's answer as the chart's validated data: a chart tool's JSON as it is, or a
    query's rows pivoted into the chart's shape.

    This is where one chart's answer ends: whatever in it upsets decoding, pivoting, validation
    or the paragraph fails this chart as bad data, never the batch it came in."""
    spec = job.spec
    try:
        payload = decode_tool_result(spec.id, job.call.tool if job.call else spec.source, result)
        if spec.sql:
            payload = chart_payload(spec, job, rows_of(spec, payload))
        data = chart_data_from_json(spec, job.merchant, payload)
        shown = shown_or_empty(spec, job.merchant, data, job.start_date, job.end_date)
        return replace(data, paragraph=paragraphs.write(spec, shown))
    except ChartError:
        raise
    except Exception as exc:  # RecursionError and MemoryError included: they come of the answer too
        raise ChartError(ErrorType.BAD_DATA, f"{spec.id}: the answer could not be read "
                                             f"({type(exc).__name__}: {one_line(str(exc), 200)})") from None


async def fetch_chart(slot: Slot, job: ChartJob, batch_id: str, config: RunnerConfig,
                      policy: RetryPolicy) -> Retrieval:
    """Call the chart's tool, as often as the retry policy allows for how it fails."""
    where = {"batch": batch_id, "merchant": job.merchant, "chart": job.spec.id}
    log = logger.bind(**where)
    started = time.perf_counter()

    call = job.call
    if call is None:  # pragma: no cover - plan_batches gives every job its call
        raise ValueError(f"{job.spec.id}: no tool call planned")

    async def attempt() -> ChartData:
        arguments = call.arguments()
        log.debug("call {} {}", call.tool, arguments)
        return chart_data(job, await slot.call_tool(call.tool, arguments, config.tool_timeout_seconds))

    with logger.contextualize(**where):  # the policy's retry lines carry them too
        tried = await policy.run_async(attempt, f"{job.merchant} {job.spec.id}")
    elapsed = (time.perf_counter() - started) * 1000
    if tried.error is not None:
        return Retrieval(job, batch_id, None, tried.error.error_type, tried.error.message, tried.tries, elapsed)
    log.debug("{} {} ok in {:.0f} ms", job.merchant, job.spec.id, elapsed)
    return Retrieval(job, batch_id, tried.value, None, None, tried.tries, elapsed)


def run_batch(batch: Batch, slot: Slot, config: RunnerConfig, policy: RetryPolicy, emit: Emit,
              concurrent_calls: bool) -> BatchResult:
    """Fetch a batch's charts on one pooled session, emitting each chart as soon as it is known.

    Charts that failed in a way the sequential fallback may cure are not emitted: they come
    back in `held`, for the coordinator to try again or to fail.
    """
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    log = logger.bind(batch=batch.batch_id)
    log.info("start {} charts for {}: {}", len(batch.jobs), batch.merchant,
             ", ".join(j.spec.id for j in batch.jobs))
    held: list[Retrieval] = []

    async def one(s: Slot, job: ChartJob) -> Retrieval:
        retrieval = await fetch_chart(s, job, batch.batch_id, config, policy)
        if policy.falls_back(retrieval.error_type):
            held.append(retrieval)
        else:
            emit(retrieval)
        return retrieval

    async def fetch_all(s: Slot) -> list[Retrieval]:
        if concurrent_calls:
            return list(await asyncio.gather(*(one(s, job) for job in batch.jobs)))
        return [await one(s, job) for job in batch.jobs]

    results = slot.run(fetch_all)
    failed = [r for r in results if r.error_type is not None]
    first = held[0] if held else (failed[0] if failed else None)
    wall_ms = (time.perf_counter() - started) * 1000
    log.info("done in {:.0f} ms: {} ok, {} failed", wall_ms, len(results) - len(failed), len(failed))
    return BatchResult.finished(batch, started_at, wall_ms, failed=len(failed),
                                attempts=max(r.attempts for r in results),
                                error_type=first.error_type if first else None, error=first.error if first else None,
                                held=tuple(held))

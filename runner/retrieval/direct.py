"""Direct mode: each chart's data comes from the one MCP tool its spec names."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from runner.config import RunnerConfig
from runner.errors import TRANSIENT_ERROR_TYPES, ChartError
from runner.jobs import Batch, BatchResult, ChartJob, Retrieval
from runner.retrieval.parse import chart_data_from_json, decode_tool_result
from runner.retrieval.sessions import Slot

Emit = Callable[[Retrieval], None]


def tool_arguments(job: ChartJob) -> dict[str, Any]:
    return {**dict(job.spec.arguments), "merchant_token": job.merchant,
            "start_date": job.start_date, "end_date": job.end_date}


async def fetch_chart(slot: Slot, job: ChartJob, batch_id: str, config: RunnerConfig) -> Retrieval:
    """Call the chart's tool, retrying transient failures with doubling delays."""
    log = logger.bind(batch=batch_id)
    started = time.perf_counter()
    attempt = 0
    while True:
        attempt += 1
        try:
            arguments = tool_arguments(job)
            log.debug("call {} {}", job.spec.tool, arguments)
            result = await slot.call_tool(job.spec.tool, arguments, config.tool_timeout_seconds)
            data = chart_data_from_json(job.spec, job.merchant, decode_tool_result(job.spec, result))
            elapsed = (time.perf_counter() - started) * 1000
            log.debug("{} {} ok in {:.0f} ms", job.merchant, job.spec.id, elapsed)
            return Retrieval(job, batch_id, data, None, None, attempt, elapsed)
        except ChartError as exc:
            if not exc.transient or attempt > config.retry_attempts:
                elapsed = (time.perf_counter() - started) * 1000
                log.warning("{} {} failed ({}): {}", job.merchant, job.spec.id, exc.error_type, exc.message)
                return Retrieval(job, batch_id, None, exc.error_type, exc.message, attempt, elapsed)
            delay = config.retry_delay_seconds * 2 ** (attempt - 1)
            log.info("{} {}: {} ({}); retry {}/{} in {:.1f}s", job.merchant, job.spec.id, exc.error_type,
                     exc.message, attempt, config.retry_attempts, delay)
            await asyncio.sleep(delay)


def run_batch(batch: Batch, slot: Slot, config: RunnerConfig, emit: Emit, concurrent_calls: bool) -> BatchResult:
    """Fetch a batch's charts on one pooled session, emitting each chart as soon as it is known.

    Charts that failed for a transient reason are not emitted: they come back in `held`,
    for the coordinator to retry sequentially or to fail.
    """
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    log = logger.bind(batch=batch.batch_id)
    log.info("start {} charts for {}: {}", len(batch.jobs), batch.merchant,
             ", ".join(j.spec.id for j in batch.jobs))
    held: list[Retrieval] = []

    def deliver(retrieval: Retrieval) -> None:
        if retrieval.error_type in TRANSIENT_ERROR_TYPES:
            held.append(retrieval)
        else:
            emit(retrieval)

    async def fetch_all(s: Slot) -> list[Retrieval]:
        async def one(job: ChartJob) -> Retrieval:
            retrieval = await fetch_chart(s, job, batch.batch_id, config)
            deliver(retrieval)
            return retrieval

        if concurrent_calls:
            return list(await asyncio.gather(*(one(job) for job in batch.jobs)))
        return [await one(job) for job in batch.jobs]

    results = slot.run(fetch_all)
    failed = [r for r in results if r.error_type is not None]
    status = "ok" if not failed else ("failed" if held else "partial")
    first = held[0] if held else (failed[0] if failed else None)
    wall_ms = (time.perf_counter() - started) * 1000
    log.info("done in {:.0f} ms: {} ok, {} failed", wall_ms, len(results) - len(failed), len(failed))
    return BatchResult(
        batch_id=batch.batch_id,
        merchant=batch.merchant,
        chart_ids=",".join(j.spec.id for j in batch.jobs),
        status=status,
        attempts=max(r.attempts for r in results),
        started_at=started_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        wall_ms=round(wall_ms, 1),
        error_type=first.error_type if first else None,
        error=first.error if first else None,
        held=tuple(held),
    )

"""Counting what happened during a run, in the shapes the report publishes.

`errors_by_type` is counted from the final chart and deck rows (runner.report.errors_by_type),
for a run and a merge alike. It counts failures only: each failed chart by its error_type, and deck errors
(one per merchant whose deck could not be built, one per document that could not be written;
a deck with no chart to show adds none, its charts' failures are counted). A cancelled chart,
batch or deck is no error, the run was stopped: `run.charts_cancelled`,
`metrics.retrieval.batches_cancelled` and `metrics.decks.decks_cancelled` count those, and the
closing summary prints the same counts.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner.status import BatchStatus

if TYPE_CHECKING:
    from runner.records import BatchResult, RenderedChart


def open_fds() -> int:
    import psutil

    return psutil.Process().num_fds()


def peak_rss_mb() -> float:
    """This process's peak resident memory so far.

    From /proc where there is one: ru_maxrss survives exec, so a runner started by a big
    process (a benchmark, an IDE) would report its parent's peak instead of its own.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # kB on Linux


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values (the report's null)."""
    return percentiles(values, q)[0]


def percentiles(values: Sequence[float], *qs: float) -> tuple[float | None, ...]:
    """Nearest-rank percentiles of one series, sorted once (a run's series hold a number a chart)."""
    if not values:
        return (None,) * len(qs)
    ordered = sorted(values)
    return tuple(round(ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1], 1) for q in qs)


def batch_counts(statuses: Iterable[str]) -> dict[str, int]:
    """The report's batch counts from every planned batch's final status. A partial batch ran
    (its failed charts are counted as charts); one stopped before or while it ran is cancelled."""
    counts = Counter(BatchStatus(status) for status in statuses)
    return {"batches_total": sum(counts.values()),
            "batches_ok": counts[BatchStatus.OK] + counts[BatchStatus.PARTIAL],
            "batches_failed": counts[BatchStatus.FAILED],
            "batches_cancelled": counts[BatchStatus.CANCELLED]}


class Gauge:
    """A thread-safe in-flight counter that remembers its peak."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0

    def __enter__(self) -> Gauge:
        with self._lock:
            self.current += 1
            self.peak = max(self.peak, self.current)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.current -= 1


@dataclass
class RunMetrics:
    """Mutated by the coordinator's main thread only (the gauges excepted)."""

    batches_total: int = 0  # every planned batch, set at the end (count_batches)
    batches_ok: int = 0
    batches_failed: int = 0
    batches_cancelled: int = 0
    batch_retries: int = 0
    llm_retries: int = 0  # agent mode: model calls sent again
    sequential_fallbacks: int = 0
    batch_ms: array[float] = field(default_factory=lambda: array("d"))  # 8 bytes a batch: a run has no size limit
    retrieval_started: float | None = None
    retrieval_finished: float | None = None

    workers: int = 0
    start_method: str = "inline"
    charts_rendered: int = 0
    charts_cached: int = 0
    peak_concurrent_renders: int = 0
    worker_restarts: int = 0
    pool_recycles: int = 0
    render_ms: array[float] = field(default_factory=lambda: array("d"))
    cpu_ms: float = 0.0
    peak_worker_rss_mb: float = 0.0
    render_started: float | None = None
    render_finished: float | None = None

    input_tokens: int = 0
    output_tokens: int = 0
    max_batch_context_tokens: int = 0


    def record_batch(self, result: BatchResult) -> None:
        """A batch that ran to its end (a stopped one never gets here)."""
        self.batch_ms.append(result.wall_ms)
        self.input_tokens += result.input_tokens or 0
        self.output_tokens += result.output_tokens or 0
        self.max_batch_context_tokens = max(self.max_batch_context_tokens, result.context_tokens or 0)
        if result.steps is not None:  # an agent batch: its attempts are its model calls sent again
            self.llm_retries += result.attempts - 1

    def count_batches(self, statuses: Iterable[str]) -> None:
        counts = batch_counts(statuses)
        self.batches_total, self.batches_ok = counts["batches_total"], counts["batches_ok"]
        self.batches_failed, self.batches_cancelled = counts["batches_failed"], counts["batches_cancelled"]

    def render_submitted(self, now: float, in_flight: int, workers: int) -> None:
        if self.render_started is None:
            self.render_started = now
        self.peak_concurrent_renders = max(self.peak_concurrent_renders, min(in_flight, workers))

    def record_render(self, rendered: RenderedChart) -> None:
        if rendered.cached:
            self.charts_cached += 1
            return
        self.charts_rendered += 1
        self.render_ms.append(rendered.render_ms)
        self.cpu_ms += rendered.cpu_ms
        self.peak_worker_rss_mb = max(self.peak_worker_rss_mb, rendered.worker_rss_mb)

    def set_render_pool(self, workers: int, start_method: str, restarts: int, recycles: int) -> None:
        self.workers, self.start_method = workers, start_method
        self.worker_restarts, self.pool_recycles = restarts, recycles

    def retrieval_wall_ms(self) -> float:
        if self.retrieval_started is None or self.retrieval_finished is None:
            return 0.0
        return round((self.retrieval_finished - self.retrieval_started) * 1000, 1)

    def utilization(self) -> float | None:
        """Busy share of the render workers between the first submit and the last result."""
        if self.render_started is None or self.render_finished is None or not self.workers:
            return None
        wall = self.render_finished - self.render_started
        if wall <= 0:
            return None
        return round(min(1.0, sum(self.render_ms) / 1000 / (wall * self.workers)), 3)

    def as_report(self, tool_calls: int, sessions_opened: int, peak_batches: int) -> dict[str, object]:
        p50_batch, p95_batch = percentiles(self.batch_ms, 50, 95)
        p50_render, p95_render = percentiles(self.render_ms, 50, 95)
        return {
            "retrieval": {
                "batches_total": self.batches_total,
                "batches_ok": self.batches_ok,
                "batches_failed": self.batches_failed,
                "batches_cancelled": self.batches_cancelled,
                "batch_retries": self.batch_retries,
                "llm_retries": self.llm_retries,
                "sequential_fallbacks": self.sequential_fallbacks,
                "tool_calls": tool_calls,
                "mcp_sessions_opened": sessions_opened,
                "peak_concurrent_batches": peak_batches,
                "wall_ms": self.retrieval_wall_ms(),
                "p50_batch_ms": p50_batch,
                "p95_batch_ms": p95_batch,
            },
            "render": {
                "workers": self.workers,
                "start_method": self.start_method,
                "charts_rendered": self.charts_rendered,
                "charts_cached": self.charts_cached,
                "peak_concurrent_renders": self.peak_concurrent_renders,
                "worker_restarts": self.worker_restarts,
                "pool_recycles": self.pool_recycles,
                "p50_render_ms": p50_render,
                "p95_render_ms": p95_render,
                "cpu_ms": round(self.cpu_ms, 1),
                "peak_worker_rss_mb": round(self.peak_worker_rss_mb, 1),
                "utilization": self.utilization(),
            },
            "tokens": {
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "max_batch_context_tokens": self.max_batch_context_tokens,
            },
        }

"""The retrieval stage: batches in a thread pool, the sequential fallback, the first session.

It reports only through events (runner.events) put on the coordinator's queue; it holds no
chart state of its own.
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from threading import Event as StopFlag

from loguru import logger

from runner.config import RunnerConfig
from runner.errors import ChartError, ErrorType
from runner.events import BatchEnded, ChartRetrieved, Event
from runner.metrics import Gauge
from runner.records import Batch, BatchResult, Retrieval
from runner.retrieval.direct import fetch_chart, run_batch
from runner.retrieval.retry import RetryPolicy
from runner.retrieval.sessions import SessionPool, Slot


class Cancelled(Exception):
    """The run stopped before the first session was open."""


class RetrievalStage:
    def __init__(self, config: RunnerConfig, sessions: SessionPool, emit: Callable[[Event], None],
                 stop: StopFlag) -> None:
        self.config = config
        self.sessions = sessions
        self.policy = RetryPolicy.from_config(config, sessions.health)
        self.batch_gauge = Gauge()
        self._emit = emit
        self._stop = stop
        concurrent = config.enable_concurrent_data_retrieval
        # Sequential retrieval is one batch thread whose calls run one by one, and no fallback.
        self._concurrent_calls = concurrent
        self._batches = ThreadPoolExecutor(config.max_concurrent_batches if concurrent else 1,
                                           thread_name_prefix="batch")
        self._fallback = (ThreadPoolExecutor(1, thread_name_prefix="fallback")
                          if concurrent and config.enable_fallback_to_sequential else None)
        # A batch begins, and a stop is announced, under this lock. The stop flag is set by the
        # signal before the coordinator's loop sees it, and a thread may have taken a batch from
        # the pool's queue before the queue was emptied: such a batch ends cancelled, unstarted.
        self._starting = threading.Lock()
        self._cancelled = False
        self._running: dict[str, Batch] = {}  # batches under way, in the order they started

    def preflight(self) -> ChartError | None:
        """Open the first session (with retries), so an unreachable server fails fast, once.
        Returns why it could not be opened; raises Cancelled if the run stopped meanwhile."""
        def open_first() -> object:
            with self.sessions.acquire() as slot:
                return slot.run(lambda s: s.client())

        try:
            tried = self.policy.run(open_first, "MCP server not reachable", self._stop)
        except concurrent.futures.CancelledError:
            raise Cancelled from None
        return tried.error

    def start(self, batches: tuple[Batch, ...]) -> None:
        for batch in batches:
            self.submit(batch)

    def submit(self, batch: Batch) -> None:
        """Queue a batch for the next free batch thread; its end is a BatchEnded event."""
        future = self._batches.submit(self._run_batch, batch)
        future.add_done_callback(functools.partial(self._batch_ended, batch))

    def _batch_ended(self, batch: Batch, future: concurrent.futures.Future[BatchResult]) -> None:
        self._emit(BatchEnded(batch, future))

    @contextmanager
    def _started(self, batch: Batch) -> Iterator[None]:
        """The batch as under way; CancelledError instead once the run is stopping."""
        with self._starting:
            if self._cancelled or self._stop.is_set():
                raise concurrent.futures.CancelledError
            self._running[batch.batch_id] = batch
        try:
            yield
        finally:
            with self._starting:
                del self._running[batch.batch_id]

    def running(self) -> tuple[Batch, ...]:
        with self._starting:
            return tuple(self._running.values())

    def _run_batch(self, batch: Batch) -> BatchResult:
        def emit(retrieval: Retrieval) -> None:
            self._emit(ChartRetrieved(retrieval))

        # The stop is checked at the last moment, with the session in hand: taking one may wait.
        with self.sessions.acquire() as slot, self._started(batch), self.batch_gauge:
            if self.config.retrieval_mode == "agent":
                from runner.retrieval.agent import run_agent_batch

                return run_agent_batch(batch, slot, self.config, self.policy, emit)
            answers = self.sessions.health.answers
            result = run_batch(batch, slot, self.config, self.policy, emit, self._concurrent_calls)
        if self.sessions.health.answers != answers:
            return result
        # The server answered nothing while the batch waited: one by one, its timed-out calls would
        # each wait out the same silence again. They are final now, not for the fallback.
        silent = [retrieval for retrieval in result.held if retrieval.error_type is ErrorType.TIMEOUT]
        for retrieval in silent:
            emit(retrieval)
        return replace(result, held=tuple(r for r in result.held if r.error_type is not ErrorType.TIMEOUT))

    def fall_back(self, held: tuple[Retrieval, ...], batch_id: str) -> bool:
        """Try a batch's failed charts again one by one; False when there is no fallback."""
        if self._fallback is None:
            return False
        logger.bind(batch=batch_id).info("retrying {} chart(s) one by one", len(held))
        for retrieval in held:
            self._fallback.submit(self._fall_back_one, retrieval)
        return True

    def _fall_back_one(self, held: Retrieval) -> None:
        if self._stop.is_set():
            return
        job, batch_id = held.job, held.batch_id

        def fetch(slot: Slot) -> Awaitable[Retrieval]:
            return fetch_chart(slot, job, batch_id, self.config, self.policy)

        try:
            with self.sessions.acquire() as slot:
                again = slot.run(fetch)
        except concurrent.futures.CancelledError:
            return
        self._emit(ChartRetrieved(Retrieval(job, batch_id, again.data, again.error_type, again.error,
                                            held.attempts + again.attempts, held.retrieve_ms + again.retrieve_ms)))

    def cancel(self, announce: Callable[[], None] = lambda: None) -> None:
        """Stop: `announce` it, then no new batch starts, and calls under way are cancelled."""
        with self._starting:
            self._cancelled = True
            announce()
        for executor in (self._batches, self._fallback):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
        self.sessions.cancel_all()

    def close(self) -> None:
        for executor in (self._batches, self._fallback):
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)

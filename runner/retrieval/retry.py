"""The one retry policy: which failures are tried again, how often, and how long to wait.

- A transport failure or a timeout (`server_unavailable`, `timeout`) may pass: it is tried
  `retry_attempts` more times, with delays doubling from `retry_delay_seconds`, and a batch's
  charts that still fail go to the sequential fallback.
- Except a timeout while the server answered nothing at all (no call of any session): asking
  again would wait out the same silence, so it is final at once. One tool that never answers
  then costs a run one tool timeout, not three and a fallback.
- An error the tool itself reports (`tool_error`) is most likely an answer, not a fault: it is
  tried at most twice in all and never goes to the fallback.
- Everything else (`bad_data`, `empty_data`, ...) is final at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from loguru import logger

from runner.errors import ChartError, ErrorType
from runner.retrieval.health import TRANSPORT_ERRORS, ServerHealth

T = TypeVar("T")

TOOL_ERROR_TRIES = 2


@dataclass(frozen=True)
class Tried(Generic[T]):
    """What came of trying: a value, or the last error; and how many tries it took."""

    value: T | None
    error: ChartError | None
    tries: int


@dataclass(frozen=True)
class RetryPolicy:
    retries: int  # tries after the first, for failures that may pass
    delay_seconds: float  # the first delay; it doubles with each retry
    max_delay_seconds: float = math.inf
    health: ServerHealth | None = field(default=None, compare=False, repr=False)  # tells a silent timeout

    @classmethod
    def from_config(cls, config: Any, health: ServerHealth | None = None) -> RetryPolicy:
        return cls(config.retry_attempts, config.retry_delay_seconds, health=health)

    def tries_for(self, error_type: ErrorType | None) -> int:
        """How many tries in all a failure of this type gets (None: a failure that may pass)."""
        if error_type is None or error_type in TRANSPORT_ERRORS:
            return 1 + self.retries
        if error_type is ErrorType.TOOL_ERROR:
            return min(TOOL_ERROR_TRIES, 1 + self.retries)
        return 1

    @staticmethod
    def falls_back(error_type: ErrorType | None) -> bool:
        """Whether a chart that failed this way is worth the sequential fallback."""
        return error_type in TRANSPORT_ERRORS

    def next_delay(self, tries: int, error_type: ErrorType | None = None, hint: float | None = None) -> float | None:
        """Seconds to wait before try `tries + 1`, or None when this failure has no try left.

        `hint` is a delay the other side asked for (retry-after); it is honoured up to the cap."""
        if tries >= self.tries_for(error_type):
            return None
        delay = hint if hint is not None else self.delay_seconds * 2 ** (tries - 1)
        return min(delay, self.max_delay_seconds)

    def _answers(self) -> int | None:
        return self.health.answers if self.health is not None else None

    def _after(self, what: str, error: ChartError, tries: int, answers_before: int | None) -> float | None:
        """The wait before the next try (and a log line saying so), or None: give up."""
        delay = None if error.final else self.next_delay(tries, error.error_type)
        if delay is not None and error.error_type is ErrorType.TIMEOUT and answers_before is not None \
                and self._answers() == answers_before:
            logger.info("{}: {} ({}); not tried again: the server answered nothing while it waited", what,
                        error.error_type, error.message)
            return None
        if delay is not None:
            logger.info("{}: {} ({}); retry {}/{} in {:.1f}s", what, error.error_type, error.message, tries,
                        self.tries_for(error.error_type) - 1, delay)
        return delay

    async def run_async(self, attempt: Callable[[], Awaitable[T]], what: str) -> Tried[T]:
        """Await `attempt()` until it succeeds or its failure has no try left."""
        tries = 0
        while True:
            tries += 1
            answers = self._answers()
            try:
                return Tried(await attempt(), None, tries)
            except ChartError as error:
                delay = self._after(what, error, tries, answers)
                if delay is None:
                    return Tried(None, error, tries)
                await asyncio.sleep(delay)

    def run(self, attempt: Callable[[], T], what: str, stop: threading.Event | None = None) -> Tried[T]:
        """`run_async` for blocking calls; a set `stop` ends the waiting with CancelledError."""
        stop = stop or threading.Event()
        tries = 0
        while True:
            tries += 1
            answers = self._answers()
            try:
                return Tried(attempt(), None, tries)
            except ChartError as error:
                delay = self._after(what, error, tries, answers)
                if delay is None:
                    return Tried(None, error, tries)
                if stop.wait(delay):
                    raise concurrent.futures.CancelledError from None

"""What a run asks the server before it plans any chart: its first merchants, and which of its
tools runs a SQL chart's query. Each question is tried as the retry policy allows.

A stop while the merchants are asked for lets the answer arrive for a short grace: with it the
report can list every chart the run would have made, as cancelled, instead of none."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from loguru import logger

from runner.config import RunnerConfig
from runner.errors import ChartError, ErrorType, UsageError
from runner.jobs import check_merchant_token
from runner.retrieval.results import decode_tool_result
from runner.retrieval.sessions import SessionPool, Slot, describe_exception
from runner.retry import RetryPolicy
from runner.sql import QueryTool, pick_query_tool

DEFAULT_MERCHANT_COUNT = 3
STOP_GRACE_SECONDS = 2.0  # how long a stop lets the merchant list still arrive
_WATCH_SECONDS = 0.1


@contextmanager
def _cancelled_after_grace(pool: SessionPool, stop: threading.Event, grace: float) -> Iterator[None]:
    """Calls made inside are not cancelled by a stop at once: they may finish for `grace`
    seconds from when the stop is seen, then they are cancelled (CancelledError where they wait)."""
    done = threading.Event()

    def watch() -> None:
        while not stop.wait(_WATCH_SECONDS):
            if done.is_set():
                return
        if done.is_set():
            return
        logger.warning("stop requested while the server's merchants are asked for: waiting up to {:g} s for "
                       "them, so the report can list every chart", grace)
        if done.wait(grace):
            return
        while not done.is_set():  # again until the question ends: a call may begin just after a cancel
            pool.cancel_all()
            done.wait(_WATCH_SECONDS)

    watcher = threading.Thread(target=watch, name="discovery-grace", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def _ask(pool: SessionPool, config: RunnerConfig, stop: threading.Event, what: str, request: Any) -> Any:
    """`request(slot)` on a pooled session, retried as the policy allows; raises the last ChartError."""
    def attempt() -> Any:
        with pool.acquire() as slot:
            return slot.run(request)

    tried = RetryPolicy.from_config(config, pool.health).run(attempt, what, stop)
    if tried.error is not None:
        raise tried.error
    return tried.value


def default_merchants(pool: SessionPool, config: RunnerConfig, stop: threading.Event,
                      grace: float = STOP_GRACE_SECONDS) -> tuple[str, ...]:
    """The server's first merchants, from its list_merchants tool. A stop ends the retries at
    once, but a call under way (or made after a stop that came earlier) may answer for `grace`
    seconds; after that it raises CancelledError."""
    def request(slot: Slot) -> Any:
        return slot.call_tool("list_merchants", {}, config.tool_timeout_seconds)

    with _cancelled_after_grace(pool, stop, grace):
        result = _ask(pool, config, stop, "list_merchants", request)
    try:
        payload = decode_tool_result("list_merchants", "list_merchants", result)
        tokens = tuple(str(m["token"]) for m in payload["merchants"][:DEFAULT_MERCHANT_COUNT])
    except ChartError as exc:
        raise UsageError(f"without --merchant, the runner asks the server's list_merchants tool, which "
                         f"failed ({exc.message[:200]}); pass --merchant or --merchants-file") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise UsageError("the server's list_merchants tool gave no usable merchant list "
                         f"({describe_exception(exc)}); pass --merchant or --merchants-file") from None
    if not tokens:
        raise ChartError(ErrorType.EMPTY_DATA, "list_merchants returned no merchants")
    return tuple(check_merchant_token(token, "the server's list_merchants") for token in tokens)


def query_tool(pool: SessionPool, config: RunnerConfig, stop: threading.Event) -> QueryTool:
    """The server's tool for the pack's SQL charts: the one the settings name, or the one whose
    schema says it takes SQL."""
    def request(slot: Slot) -> Any:
        return slot.list_tools(config.tool_timeout_seconds)

    tool = pick_query_tool(_ask(pool, config, stop, "tools/list", request) or [], config.query_tool,
                           config.query_argument)
    logger.info("SQL charts run through tool {}", tool.describe())
    return tool

"""What a run asks the server before it plans any chart: its first merchants (with their names),
and which of its tools runs a SQL chart's query. Each question is tried as the retry policy allows.

The first merchants come from the pack's merchants query when it has one (SQL packs: through
the query tool), else from the server's list_merchants tool. A name from the server is untrusted
text: it is cleaned (runner.merchants.merchant_name) and only ever shown, never part of a path.

A stop while the merchants are asked for lets the answer arrive for a short grace: with it the
report can list every chart the run would have made, as cancelled, instead of none."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from loguru import logger

from runner.charts import ChartSpec
from runner.config import RunnerConfig
from runner.errors import ChartError, ErrorType, UsageError
from runner.merchants import check_merchant_token, merchant_name
from runner.retrieval.pivot import rows_of
from runner.retrieval.results import decode_tool_result
from runner.retrieval.retry import RetryPolicy
from runner.retrieval.sessions import SessionPool, Slot, describe_exception
from runner.sql import QueryTool, pick_query_tool

DEFAULT_MERCHANT_COUNT = 3
LIST_STOP_GRACE_SECONDS = 2.0  # how long a stop lets the merchant list still arrive
_WATCH_SECONDS = 0.1
# How the merchants query's rows are read (runner.retrieval.pivot): objects by column name, bare
# tuples as (merchant_token, name).
_MERCHANT_ROWS = ChartSpec(id="merchants", title="merchants", tool="", kind="bars", request="",
                           columns=(("label", "merchant_token"), ("value", "name")))


@dataclass(frozen=True)
class Merchants:
    """The server's first merchants: tokens in its order, and the names it gave them."""

    tokens: tuple[str, ...]
    names: tuple[tuple[str, str], ...] = ()  # (token, display name), cleaned
    query_tool: QueryTool | None = None  # found to run the merchants query: the SQL charts use it too

    def describe(self) -> str:
        names = dict(self.names)
        return ", ".join(f"{token} ({names[token]})" if token in names else token for token in self.tokens)


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


def default_merchants(pool: SessionPool, config: RunnerConfig, stop: threading.Event, merchants_sql: str = "",
                      grace: float = LIST_STOP_GRACE_SECONDS) -> Merchants:
    """The server's first merchants and their names: from the pack's merchants query when it has
    one, else from its list_merchants tool. A stop ends the retries at once, but a call under way
    (or made after a stop that came earlier) may answer for `grace` seconds; after that it raises
    CancelledError."""
    with _cancelled_after_grace(pool, stop, grace):
        if merchants_sql:
            return _from_query(pool, config, stop, merchants_sql)
        result = _ask(pool, config, stop, "list_merchants",
                      lambda slot: slot.call_tool("list_merchants", {}, config.tool_timeout_seconds))
    try:
        payload = decode_tool_result("list_merchants", "list_merchants", result)
        listed = [(str(m["token"]), m.get("name")) for m in payload["merchants"][:DEFAULT_MERCHANT_COUNT]]
    except ChartError as exc:
        raise UsageError(f"without --merchant, the runner asks the server's list_merchants tool, which "
                         f"failed ({exc.message[:200]}); pass --merchant or --merchants-file") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise UsageError("the server's list_merchants tool gave no usable merchant list "
                         f"({describe_exception(exc)}); pass --merchant or --merchants-file") from None
    if not listed:
        raise ChartError(ErrorType.EMPTY_DATA, "list_merchants returned no merchants")
    return _checked(listed, "the server's list_merchants")


def _from_query(pool: SessionPool, config: RunnerConfig, stop: threading.Event, merchants_sql: str) -> Merchants:
    """The first rows of the pack's merchants query, run through the server's query tool."""
    tool = query_tool(pool, config, stop)
    result = _ask(pool, config, stop, "the pack's merchants query", lambda slot: slot.call_tool(
        tool.name, tool.arguments(merchants_sql, {}), config.tool_timeout_seconds))
    try:
        rows = rows_of(_MERCHANT_ROWS, decode_tool_result("merchants", tool.name, result))
        listed = [(str(row["merchant_token"] if "merchant_token" in row else row["token"]),
                   row.get("name", row.get("merchant_name"))) for row in rows[:DEFAULT_MERCHANT_COUNT]]
    except ChartError as exc:
        raise UsageError(f"without --merchant, the runner runs the pack's merchants query, which failed "
                         f"({exc.message[:200]}); pass --merchant or --merchants-file") from None
    except KeyError:
        raise UsageError(f"the pack's merchants query gave no merchant_token column (it has: "
                         f"{', '.join(map(str, list(rows[0])[:10]))}); pass --merchant or --merchants-file") from None
    if not listed:
        raise ChartError(ErrorType.EMPTY_DATA, "the pack's merchants query returned no merchants")
    return replace(_checked(listed, "the pack's merchants query"), query_tool=tool)


def _checked(listed: list[tuple[str, Any]], where: str) -> Merchants:
    tokens = tuple(check_merchant_token(token, where) for token, _ in listed)
    cleaned = [(token, merchant_name(name, token)) for token, (_, name) in zip(tokens, listed, strict=True)]
    return Merchants(tokens, tuple((token, name) for token, name in cleaned if name != token))


def query_tool(pool: SessionPool, config: RunnerConfig, stop: threading.Event) -> QueryTool:
    """The server's tool for the pack's SQL charts: the one the settings name, or the one whose
    schema says it takes SQL."""
    def request(slot: Slot) -> Any:
        return slot.list_tools(config.tool_timeout_seconds)

    tool = pick_query_tool(_ask(pool, config, stop, "tools/list", request) or [], config.query_tool,
                           config.query_argument)
    logger.info("SQL charts run through tool {}", tool.describe())
    return tool

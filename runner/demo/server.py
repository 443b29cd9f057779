"""The embedded demo MCP server: one tool per built-in chart over the synthetic warehouse.

Run with `python -m runner demo-server [--transport stdio|http] [--port N] [--latency-ms N]`.
Over HTTP it prints `READY <url>` on stdout once it listens, so a parent can bind port 0
and learn the real port.
"""

from __future__ import annotations

import calendar
import itertools
import json
import os
import random
import re
import socket
import sqlite3
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import date
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent

from runner.demo.data import AGE_BANDS, MERCHANT_COUNT, build_database

_TOKEN = re.compile(r"^[A-Za-z0-9]{1,64}$")
_DATE = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?$")
_PRODUCT_NAMES = {"pay_in_3": "Pay in 3", "pay_in_4": "Pay in 4"}
_USER_NAMES = {"network": "Network", "returning": "Returning", "new": "New"}


def _band(age: int) -> str:
    for label in AGE_BANDS[:-1]:
        low, high = (int(x) for x in label.split("-"))
        if low <= age <= high:
            return label
    return AGE_BANDS[-1]


# Worked out once: the demographics tool looks up every customer's age band, and at 64 batches
# at once the server's CPU per call bounds the bench's retrieval figures.
_AGE_BANDS_BY_AGE = {age: _band(age) for age in range(130)}


@dataclass(frozen=True)
class DemoOptions:
    latency_ms: int = 0
    call_log: str | None = None  # each chart tool call is appended here as "tool merchant" (tests count calls)
    scale: float = 1.0
    merchants: int = MERCHANT_COUNT
    # Fault injection, for tests and drills. `fault_tools` limits the faults to those chart
    # tools (empty: every chart tool); list_merchants is never faulted.
    fail_rate: float = 0.0  # this share of calls raise a tool error (seeded, so repeatable)
    hang: bool = False  # calls never answer
    crash_after: int = 0  # the server process exits during the call after this many calls
    malformed: str | None = None  # one of cli.MALFORMED_KINDS
    fault_tools: tuple[str, ...] = ()


def _month(text: str, name: str) -> str:
    match = _DATE.match(text or "")
    if not match:
        raise ToolError(f"{name} must be YYYY-MM-DD or YYYY-MM, got {text!r}")
    year, month = int(match[1]), int(match[2])
    day = int(match[3]) if match[3] else 1
    try:
        date(year, month, day)
    except ValueError:
        raise ToolError(f"{name} {text!r} is not a calendar date") from None
    return f"{year:04d}-{month:02d}"


def _months_between(first: str, last: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:])
    out = []
    while f"{year:04d}-{month:02d}" <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


class Warehouse:
    """Parameterized queries over the demo data; every method returns chart JSON."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._lock = threading.Lock()  # one connection, possibly used from worker threads

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self.db.execute(sql, params).fetchall()

    def merchants(self) -> list[dict[str, str]]:
        rows = self._rows("SELECT token, name, category FROM merchants ORDER BY id", ())
        return [{"token": t, "name": n, "category": c} for t, n, c in rows]

    def _window(self, token: str, start_date: str, end_date: str) -> tuple[int, str, str]:
        if not isinstance(token, str) or not _TOKEN.match(token):
            raise ToolError(f"merchant_token must be alphanumeric, got {str(token)[:80]!r}")
        rows = self._rows("SELECT id FROM merchants WHERE token = ?", (token,))
        if not rows:
            raise ToolError(f"unknown merchant {token!r}")
        first, last = _month(start_date, "start_date"), _month(end_date, "end_date")
        if first > last:
            raise ToolError(f"start_date {start_date!r} is after end_date {end_date!r}")
        return rows[0][0], first, last

    def _by_month(self, token: str, start: str, end: str, column: str, value_sql: str,
                  names: dict[str, str]) -> dict[str, Any]:
        merchant_id, first, last = self._window(token, start, end)
        months = _months_between(first, last)
        # column and value_sql come from this module's constants, never from a caller.
        rows = self._rows(
            f"SELECT month, {column}, {value_sql} FROM orders WHERE merchant_id = ? AND month BETWEEN ? AND ? "
            f"GROUP BY month, {column}",
            (merchant_id, first, last),
        )
        if not rows:
            return {"labels": months, "series": [], "unit": ""}
        table = {(m, k): v for m, k, v in rows}
        series = [
            {"name": label, "values": [round(table.get((m, key), 0), 2) for m in months]}
            for key, label in names.items()
        ]
        return {"labels": months, "series": series}

    def monthly_sales_yoy(self, token: str, start: str, end: str) -> dict[str, Any]:
        merchant_id, first, last = self._window(token, start, end)
        rows = self._rows(
            "SELECT month, SUM(amount) FROM orders WHERE merchant_id = ? AND month BETWEEN ? AND ? GROUP BY month",
            (merchant_id, first, last),
        )
        labels = [calendar.month_abbr[i] for i in range(1, 13)]
        if not rows:
            return {"labels": labels, "series": [], "unit": "EUR"}
        sales = dict(rows)
        in_window = set(_months_between(first, last))
        series = []
        for year in range(int(first[:4]), int(last[:4]) + 1):
            keys = [f"{year:04d}-{m:02d}" for m in range(1, 13)]
            series.append({
                "name": str(year),
                "values": [round(sales.get(k, 0.0), 2) if k in in_window else None for k in keys],
            })
        return {"labels": labels, "series": series, "unit": "EUR"}

    def sales_by_product_type(self, token: str, start: str, end: str) -> dict[str, Any]:
        return {**self._by_month(token, start, end, "product_type", "SUM(amount)", _PRODUCT_NAMES), "unit": "EUR"}

    def orders_by_user_type(self, token: str, start: str, end: str) -> dict[str, Any]:
        return {**self._by_month(token, start, end, "user_type", "COUNT(*)", _USER_NAMES), "unit": "orders"}

    def aov_by_month(self, token: str, start: str, end: str) -> dict[str, Any]:
        merchant_id, first, last = self._window(token, start, end)
        months = _months_between(first, last)
        rows = self._rows(
            "SELECT month, AVG(amount) FROM orders WHERE merchant_id = ? AND month BETWEEN ? AND ? GROUP BY month",
            (merchant_id, first, last),
        )
        if not rows:
            return {"labels": months, "series": [], "unit": "EUR"}
        aov = dict(rows)
        values = [round(aov[m], 2) if m in aov else None for m in months]
        return {"labels": months, "series": [{"name": "AOV", "values": values}], "unit": "EUR"}

    def demographics(self, token: str, start: str, end: str) -> dict[str, Any]:
        merchant_id, first, last = self._window(token, start, end)
        customers = (  # each customer who ordered in the window, once
            "SELECT age, gender, card_type FROM customers WHERE id IN "
            "(SELECT customer_id FROM orders WHERE merchant_id = ? AND month BETWEEN ? AND ?)"
        )
        rows = self._rows(customers, (merchant_id, first, last))
        if not rows:
            return {"groups": [], "unit": "%"}
        total = len(rows)

        def shares(keys: list[str], order: tuple[str, ...]) -> dict[str, Any]:
            counts = Counter(keys)
            return {"labels": [k.capitalize() if k[0].isalpha() else k for k in order],
                    "values": [round(100 * counts[k] / total, 1) for k in order]}

        groups = [
            {"name": "Age band", **shares([_AGE_BANDS_BY_AGE.get(r[0]) or _band(r[0]) for r in rows], AGE_BANDS)},
            {"name": "Gender", **shares([r[1] for r in rows], ("female", "male", "undisclosed"))},
            {"name": "Card type", **shares([r[2] for r in rows], ("credit", "debit", "prepaid"))},
        ]
        return {"groups": groups, "unit": "%", "customers": total}

    def _by_product(self, token: str, start: str, end: str, value_sql: str, unit: str) -> dict[str, Any]:
        merchant_id, first, last = self._window(token, start, end)
        rows = dict(self._rows(
            f"SELECT product_type, {value_sql} FROM orders WHERE merchant_id = ? AND month BETWEEN ? AND ? "
            "GROUP BY product_type",
            (merchant_id, first, last),
        ))
        if not rows:
            return {"labels": [], "values": [], "unit": unit}
        return {"labels": list(_PRODUCT_NAMES.values()),
                "values": [round(rows.get(k, 0), 2) for k in _PRODUCT_NAMES], "unit": unit}

    def orders_by_product_type(self, token: str, start: str, end: str) -> dict[str, Any]:
        return self._by_product(token, start, end, "COUNT(*)", "orders")

    def aov_by_product_type(self, token: str, start: str, end: str) -> dict[str, Any]:
        return self._by_product(token, start, end, "AVG(amount)", "EUR")


# tool name -> (Warehouse method, description)
CHART_TOOLS = {
    "get_monthly_sales_yoy": ("monthly_sales_yoy", "Total sales per calendar month, one series per year."),
    "get_monthly_sales_by_product_type": ("sales_by_product_type", "Monthly sales split by pay in 3 / pay in 4."),
    "get_monthly_orders_by_user_type": ("orders_by_user_type", "Monthly orders by network, returning, new users."),
    "get_aov_by_month": ("aov_by_month", "Average order value per month."),
    "get_user_demographics": ("demographics", "Share of customers by age band, gender and card type (%)."),
    "get_orders_by_product_type": ("orders_by_product_type",
                                   "Number of orders by product type (pay in 3 / pay in 4), with shares."),
    "get_aov_by_product_type": ("aov_by_product_type", "Average order value by product type (pay in 3 / pay in 4)."),
}

_DATES_HELP = " Arguments: merchant_token (12 characters), start_date and end_date as YYYY-MM-DD."


def malformed_result(kind: str, good: dict[str, Any]) -> CallToolResult:
    """A deliberately bad answer of the given kind, built from a good one."""
    def text(body: str) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text=body)])

    def scaled(factor: float) -> dict[str, Any]:
        def walk(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: walk(v) if k in ("values", "series", "groups") else v for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v) for v in value]
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value * factor
            return value
        return walk(good)

    if kind == "text":
        return text("<html><body>502 Bad Gateway</body></html>")
    if kind == "shape":
        return text(json.dumps({"rows": [[1, 2], [3, 4]], "note": "not a chart"}))
    if kind == "nan":
        return text(json.dumps({**good, "values": [float("nan")] * 2, "series": [
            {"name": "x", "values": [float("inf")] * len(good.get("labels") or [0])}]}))
    if kind == "negative":
        return text(json.dumps(scaled(-1)))
    if kind == "percent":
        return text(json.dumps(scaled(0.5)))
    if kind.startswith("huge"):  # about 60 MB: as JSON text, as structured content, or as plain text
        labels = ["x" * 100] * 600_000
        if kind == "huge_structured":
            return CallToolResult(content=[], structured_content={"labels": labels})
        return text("\n".join(labels) if kind == "huge_plain" else json.dumps({"labels": labels}))
    if kind == "deep":  # nested 200,000 levels: a recursive decoder would overflow its stack
        return text("[" * 200_000 + "]" * 200_000)
    if kind == "series":
        labels = good.get("labels") or ["a"]
        return text(json.dumps({"labels": labels, "series": [
            {"name": f"s{i}", "values": [1] * len(labels)} for i in range(5000)]}))
    raise ValueError(kind)


def build_server(options: DemoOptions, warehouse: Warehouse | None = None) -> MCPServer:
    warehouse = warehouse or Warehouse(build_database(options.scale, options.merchants))
    app = MCPServer("runner-demo-warehouse", log_level="ERROR")
    faults = random.Random(7)
    calls = itertools.count(1)

    async def pause() -> None:
        if options.latency_ms:
            await anyio.sleep(options.latency_ms / 1000)

    @app.tool(description="List the merchants in the warehouse: token, name and category.")
    async def list_merchants() -> dict[str, Any]:
        await pause()
        return {"merchants": warehouse.merchants()}

    def add_chart_tool(tool_name: str, method_name: str, description: str) -> None:
        method = getattr(warehouse, method_name)
        faulted = not options.fault_tools or tool_name in options.fault_tools

        async def chart_tool(merchant_token: str, start_date: str, end_date: str) -> CallToolResult:
            if options.call_log:
                with open(options.call_log, "a", encoding="utf-8") as log:
                    log.write(f"{tool_name} {merchant_token}\n")
            await pause()
            if faulted:
                if options.crash_after and next(calls) > options.crash_after:
                    os._exit(3)
                if options.hang:
                    await anyio.sleep_forever()
                if options.fail_rate and faults.random() < options.fail_rate:
                    raise ToolError("injected failure: the warehouse is temporarily unavailable")
            data = method(merchant_token, start_date, end_date)
            if faulted and options.malformed:
                return malformed_result(options.malformed, data)
            # The same JSON as structured content and as text, for clients that read either.
            return CallToolResult(content=[TextContent(type="text", text=json.dumps(data))], structured_content=data)

        app.add_tool(chart_tool, name=tool_name, description=description + _DATES_HELP)

    for tool_name, (method_name, description) in CHART_TOOLS.items():
        add_chart_tool(tool_name, method_name, description)
    return app


def _exit_when_parent_goes() -> None:
    """The parent holds our stdin open; EOF means it is gone, so leave no orphan behind."""
    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            import os

            os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. Without it each tool call stalls ~40 ms on loopback:
    # Nagle's algorithm holds the response's last small write until the client's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(256)
    return sock


def serve(transport: str, host: str, port: int, options: DemoOptions, exit_with_parent: bool) -> None:
    app = build_server(options)
    if transport == "stdio":
        app.run("stdio")
        return
    import uvicorn

    sock = listening_socket(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app.streamable_http_app(), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    if exit_with_parent:
        _exit_when_parent_goes()
    print(f"READY http://{host}:{bound_port}/mcp", flush=True)
    anyio.run(lambda: server.serve(sockets=[sock]))

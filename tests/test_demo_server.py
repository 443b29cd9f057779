"""The demo MCP server's tools, over a real stdio session and a real streamable-HTTP session."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from runner.charts import BUILTIN_PACK
from runner.demo.data import DORMANT_INDEX, MERCHANT_COUNT
from runner.errors import ChartError
from runner.retrieval.parse import chart_data_from_json
from runner.retrieval.results import decode_tool_result

WINDOW = {"start_date": "2024-01-01", "end_date": "2025-12-31"}


def _stdio() -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "runner", "demo-server", "--transport", "stdio"])


async def _exercise(target: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with Client(target) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        out["tools"] = tools
        merchants = (await client.call_tool("list_merchants", {})).structured_content["merchants"]
        out["merchants"] = merchants
        first = merchants[0]["token"]
        dormant = merchants[DORMANT_INDEX]["token"]
        out["charts"] = {}
        for spec in BUILTIN_PACK:
            result = await client.call_tool(spec.tool, {"merchant_token": first, **WINDOW})
            text = json.loads(result.content[0].text)
            out["charts"][spec.id] = (result, text)
        out["dormant"] = {s.id: await client.call_tool(s.tool, {"merchant_token": dormant, **WINDOW})
                          for s in BUILTIN_PACK}
        out["unknown"] = await client.call_tool(BUILTIN_PACK[0].tool, {"merchant_token": "NOSUCHTOKEN1", **WINDOW})
        out["hostile"] = await client.call_tool(BUILTIN_PACK[0].tool,
                                                {"merchant_token": "../../x'; DROP TABLE orders;--", **WINDOW})
        out["bad_date"] = await client.call_tool(BUILTIN_PACK[0].tool,
                                                 {"merchant_token": first, "start_date": "2024-13-01",
                                                  "end_date": "2025-12-31"})
        out["reversed"] = await client.call_tool(BUILTIN_PACK[0].tool,
                                                 {"merchant_token": first, "start_date": "2025-01-01",
                                                  "end_date": "2024-01-01"})
        # still answers after the hostile call: nothing was dropped
        out["after"] = await client.call_tool(BUILTIN_PACK[0].tool, {"merchant_token": first, **WINDOW})
    return out


def _check(out: dict[str, Any]) -> None:
    assert {"list_merchants", *(s.tool for s in BUILTIN_PACK)} <= out["tools"]
    merchants = out["merchants"]
    assert len(merchants) == MERCHANT_COUNT >= 20
    assert all(re.fullmatch(r"[A-Za-z0-9]{12}", m["token"]) for m in merchants)
    assert len({m["token"] for m in merchants}) == len(merchants)
    for spec in BUILTIN_PACK:
        result, text = out["charts"][spec.id]
        assert not result.is_error
        assert result.structured_content == text, "structured content and text must carry the same JSON"
        data = chart_data_from_json(spec, merchants[0]["token"], decode_tool_result(spec.id, spec.tool, result))
        assert data.panels and all(p.labels for p in data.panels)
    for spec in BUILTIN_PACK:
        with pytest.raises(ChartError) as info:
            chart_data_from_json(spec, "d", decode_tool_result(spec.id, spec.tool, out["dormant"][spec.id]))
        assert info.value.error_type == "empty_data"
    for key, fragment in (("unknown", "unknown merchant"), ("hostile", "alphanumeric"),
                          ("bad_date", "not a calendar date"), ("reversed", "after end_date")):
        assert out[key].is_error, key
        assert fragment in out[key].content[0].text, (key, out[key].content[0].text)
    assert not out["after"].is_error


def test_tools_over_stdio() -> None:
    _check(asyncio.run(_exercise(_stdio())))


def test_tools_over_http(demo_url: str) -> None:
    _check(asyncio.run(_exercise(demo_url)))


def test_data_is_deterministic_and_shaped(demo_url: str) -> None:
    stdio = asyncio.run(_exercise(_stdio()))
    http = asyncio.run(_exercise(demo_url))
    assert [m["token"] for m in stdio["merchants"]] == [m["token"] for m in http["merchants"]]
    assert stdio["charts"]["monthly_sales_yoy"][1] == http["charts"]["monthly_sales_yoy"][1]
    # Seasonality: December sells more than February in every full year.
    yoy = http["charts"]["monthly_sales_yoy"][1]
    for series in yoy["series"]:
        assert series["values"][11] > series["values"][1], series["name"]


def test_latency_option_delays_calls(tmp_path: Any) -> None:
    import time

    from runner.demo.launch import embedded_server

    async def timed(url: str) -> float:
        async with Client(url) as client:
            started = time.perf_counter()
            await client.call_tool("list_merchants", {})
            return time.perf_counter() - started

    with embedded_server(tmp_path / "log", ["--latency-ms", "300"]) as (url, _pid):
        assert asyncio.run(timed(url)) >= 0.3


def test_more_merchants_for_scale_runs_keep_the_first_ones() -> None:
    from runner.demo.data import build_database

    def merchants(db: Any) -> list[tuple[str, str]]:
        return db.execute("SELECT token, name FROM merchants ORDER BY id").fetchall()

    usual, more = merchants(build_database(scale=0.05)), merchants(build_database(scale=0.05, merchants=60))
    assert len(usual) == MERCHANT_COUNT and len(more) == 60
    assert more[:MERCHANT_COUNT] == usual
    assert len({token for token, _ in more}) == 60 and len({name for _, name in more}) == 60


def test_the_http_server_socket_sends_small_writes_at_once() -> None:
    """Accepted connections inherit TCP_NODELAY; without it every tool call waited ~40 ms."""
    import socket

    from runner.demo.server import listening_socket

    with listening_socket("127.0.0.1", 0) as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0

"""A stdio MCP server with the demo's chart tools, whose answers carry one bad value where told.

    python tests/hostile_values_server.py --poison TOOL=KIND [--poison ...]

Every chart tool answers as the demo server does (the demo data set, the same JSON as
structured content and as text), except that a poisoned tool's answer holds one value no
chart can carry (KINDS below). Run as a script, so a stdio child needs no PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent

from runner.demo.data import build_database
from runner.demo.server import CHART_TOOLS, Warehouse

HUGE = int("9" * 400)  # a 400-digit integer: no float can hold it


def _first_values(answer: dict[str, Any]) -> list[Any]:
    if "series" in answer:
        return answer["series"][0]["values"]
    if "groups" in answer:
        return answer["groups"][0]["values"]
    return answer["values"]


def poisoned(kind: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The answer with its one bad value: a 400-digit integer, or an impossible month."""
    if kind == "huge-int":
        _first_values(answer)[0] = HUGE
    elif kind == "bad-month":
        answer["labels"][-1] = "2024-13"
    else:
        raise ValueError(kind)
    return answer


def build(poison: dict[str, str]) -> MCPServer:
    warehouse = Warehouse(build_database())
    app = MCPServer("runner-test-hostile-values", log_level="ERROR")

    @app.tool(description="List the merchants in the warehouse: token, name and category.")
    def list_merchants() -> dict[str, Any]:
        return {"merchants": warehouse.merchants()}

    def add(tool_name: str, method_name: str) -> None:
        method = getattr(warehouse, method_name)

        def chart_tool(merchant_token: str, start_date: str, end_date: str) -> CallToolResult:
            answer = method(merchant_token, start_date, end_date)
            if tool_name in poison:
                answer = poisoned(poison[tool_name], answer)
            return CallToolResult(content=[TextContent(type="text", text=json.dumps(answer))],
                                  structured_content=answer)

        app.add_tool(chart_tool, name=tool_name, description=f"{method_name} for one merchant and period.")

    for tool_name, (method_name, _description) in CHART_TOOLS.items():
        add(tool_name, method_name)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--poison", action="append", default=[], help="TOOL=KIND (huge-int or bad-month)")
    options = parser.parse_args()
    poison = dict(item.split("=", 1) for item in options.poison)
    unknown = set(poison) - set(CHART_TOOLS)
    if unknown:
        sys.exit(f"unknown tool(s): {', '.join(sorted(unknown))}")
    build(poison).run("stdio")


if __name__ == "__main__":
    main()

"""A SQL MCP server for the tests, answering in the format of one real server or another.

    python tests/sql_server.py --db FILE [--format F] [--params] [--require-env NAME=SHA256]
                               [--transport http --require-header "Name: SHA256"]

It runs queries against a SQLite file written by `python -m runner demo-data --sqlite`.
--format picks how rows come back (FORMATS below); --params takes bound parameters in an
object argument (as mcp-alchemy does); --require-env and --require-header refuse to answer
unless the variable or header holds the value whose sha256 is given (so no test ever passes
the secret itself on a command line). Run as a script, so a stdio child needs no PYTHONPATH.
"""

from __future__ import annotations

import argparse
import decimal
import hashlib
import json
import os
import sqlite3
import sys
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, EmbeddedResource, TextContent, TextResourceContents

FORMATS = (
    "structured",  # structured content {"rows": [...]}, text a summary
    "json-rows",  # text: a JSON list of row objects
    "columns-rows",  # text: {"columns": [...], "rows": [[...]]} (MotherDuck)
    "wrapped",  # a `str` return, which MCPServer sends as {"result": "<json text>"}
    "python-dicts",  # text: str() of a list of dicts with Decimal values (SQLite reference server, postgres-mcp)
    "python-tuples",  # text: str() of a list of tuples, no column names
    "resource",  # an embedded application/json resource (Snowflake community server)
    "garbage",  # text that is no format at all
)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _rows(db_path: str, sql: str, params: dict[str, Any] | None) -> tuple[list[str], list[tuple[Any, ...]]]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        cursor = db.execute(sql, params or {})
        return [d[0] for d in cursor.description or []], cursor.fetchall()
    finally:
        db.close()


def answer(fmt: str, columns: list[str], rows: list[tuple[Any, ...]]) -> CallToolResult:
    dicts = [dict(zip(columns, row, strict=True)) for row in rows]
    text = TextContent(type="text", text=json.dumps(dicts))
    if fmt == "structured":
        summary = TextContent(type="text", text=f"{len(rows)} rows")
        return CallToolResult(content=[summary], structured_content={"rows": dicts})
    if fmt in ("json-rows", "wrapped"):
        return CallToolResult(content=[text])
    if fmt == "columns-rows":
        body = {"success": True, "columns": columns, "rows": [list(r) for r in rows], "rowCount": len(rows)}
        return CallToolResult(content=[TextContent(type="text", text=json.dumps(body))])
    if fmt == "python-dicts":
        as_decimal = [{k: decimal.Decimal(str(v)) if isinstance(v, float) else v for k, v in d.items()} for d in dicts]
        return CallToolResult(content=[TextContent(type="text", text=str(as_decimal))])
    if fmt == "python-tuples":
        return CallToolResult(content=[TextContent(type="text", text=str([tuple(r) for r in rows]))])
    if fmt == "resource":
        resource = TextResourceContents(uri="data://result", mime_type="application/json", text=json.dumps(dicts))
        return CallToolResult(content=[EmbeddedResource(type="resource", resource=resource)])
    return CallToolResult(content=[TextContent(type="text", text="<html><body>502 Bad Gateway</body></html>")])


def build(options: argparse.Namespace) -> MCPServer:
    app = MCPServer("runner-test-sql", log_level="ERROR")

    def check_env() -> None:
        for requirement in options.require_env:
            name, _, digest = requirement.partition("=")
            if _digest(os.environ.get(name, "")) != digest:
                raise ToolError(f"{name} is missing or wrong")

    def run(sql: str, params: dict[str, Any] | None) -> CallToolResult:
        check_env()
        print(f"query params={json.dumps(params)} sql={' '.join(sql.split())[:2000]}", file=sys.stderr, flush=True)
        try:
            columns, rows = _rows(options.db, sql, params)
        except sqlite3.Error as exc:  # as the SQLite reference server does: an unflagged error text
            return CallToolResult(content=[TextContent(type="text", text=f"Database error: {exc}")])
        return answer(options.format, columns, rows)

    def as_text(result: CallToolResult) -> str:
        return result.content[0].text if isinstance(result.content[0], TextContent) else ""

    if options.format == "wrapped":  # a `str` return, which MCPServer sends as {"result": "<text>"}
        @app.tool(name="read_query", description="Run a read-only SQL query.")
        def read_query_text(query: str) -> str:
            return as_text(run(query, None))
    elif options.params:
        @app.tool(description="Run a read-only SQL query; bind :name parameters from params.")
        def execute_query(query: str, params: dict[str, Any] | None = None) -> CallToolResult:
            return run(query, params)
    else:
        @app.tool(description="Run a read-only SQL query.")
        def read_query(query: str) -> CallToolResult:
            return run(query, None)

    if options.second_query_tool:
        @app.tool(description="Run SQL on the other database.")
        def run_sql(sql: str) -> CallToolResult:
            return run(sql, None)

    @app.tool(description="The names (never the values) of this server's environment variables, as a chart.")
    def env_names() -> str:
        names = sorted(os.environ)
        return json.dumps({"labels": names, "values": [1] * len(names), "unit": "variables"})

    @app.tool(description="Orders by product type; only these three arguments are accepted.")
    def orders_by_product(token: str, since: str, until: str) -> str:
        sql = ("SELECT product_type, COUNT(*) AS n FROM orders WHERE merchant_token = :t "
               "AND order_date BETWEEN :s AND :u GROUP BY product_type ORDER BY product_type")
        columns, rows = _rows(options.db, sql, {"t": token, "s": since, "u": until})
        return json.dumps({"labels": [r[0] for r in rows], "values": [r[1] for r in rows], "unit": "orders"})

    # Like servers whose schemas say additionalProperties: false, refuse unknown arguments.
    strict = app._tool_manager.get_tool("orders_by_product")
    assert strict is not None
    strict.fn_metadata.arg_model.model_config["extra"] = "forbid"
    strict.fn_metadata.arg_model.model_rebuild(force=True)
    return app


def serve_http(app: MCPServer, required: list[str]) -> None:
    import uvicorn

    inner = app.streamable_http_app()
    wanted = [(name.strip().lower().encode(), digest.strip())
              for name, _, digest in (r.partition(":") for r in required)]

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if any(_digest(headers.get(name, b"").decode()) != digest for name, digest in wanted):
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": b"unauthorized"})
                return
        await inner(scope, receive, send)

    from runner.demo.server import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(guarded, log_level="warning", lifespan="on"))
    print(f"READY http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    # The lifespan of the wrapped app runs the session manager.
    anyio.run(lambda: server.serve(sockets=[sock]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--format", choices=FORMATS, default="json-rows")
    parser.add_argument("--params", action="store_true")
    parser.add_argument("--second-query-tool", action="store_true")
    parser.add_argument("--require-env", action="append", default=[])
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--require-header", action="append", default=[])
    options = parser.parse_args()
    app = build(options)
    if options.transport == "http":
        serve_http(app, options.require_header)
    else:
        app.run("stdio")


if __name__ == "__main__":
    main()

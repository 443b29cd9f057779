"""Numbered-row text (mcp-alchemy), an mcp 1.x server's content list, and which tool runs SQL."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp.types import CallToolResult, TextContent, Tool, ToolAnnotations

from runner.errors import ChartError, UsageError
from runner.retrieval.results import decode_tool_result
from runner.sql import QueryTool, pick_query_tool


def alchemy_text(rows: list[dict[str, Any]], limit: int = 4000) -> str:
    """Rows the way mcp-alchemy's execute_query writes them (its format_result, re-typed here)."""
    out: list[str] = []
    size = 0
    for i, row in enumerate(rows, 1):
        block = [f"{i}. row", *(f"{k}: {'NULL' if v is None else v}" for k, v in row.items()), ""]
        size += sum(len(line) + 1 for line in block)
        if size > limit:
            return "\n".join([*out, f"Result: showing first {i - 1} rows (output truncated)"])
        out.extend(block)
    return "\n".join([*out, f"Result: {len(rows)} rows"]) if rows else "No rows returned"


def as_mcpserver_str(text: str) -> CallToolResult:
    """A `str` return of MCPServer: the text, and {"result": text} as structured content."""
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content={"result": text})


NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,11}", fullmatch=True)
# One line of text (mcp-alchemy's format has no escape for a line break); "NULL" is null by design.
VALUES = st.one_of(st.none(), st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=30)
                   .map(str.strip).filter(lambda v: v != "NULL"))


@given(st.lists(NAMES, min_size=1, max_size=5, unique=True).flatmap(lambda columns: st.lists(
    st.tuples(*[VALUES] * len(columns)).map(lambda values: dict(zip(columns, values, strict=True))), max_size=30)))
def test_numbered_rows_read_back_as_sent(rows):
    text = alchemy_text(rows, limit=10**9)
    assert decode_tool_result("c", "execute_query", as_mcpserver_str(text)) == rows


@given(st.lists(st.integers(0, 10**12).map(lambda n: {"month": "2024-01", "n": str(n)}), min_size=2, max_size=40),
       st.integers(20, 400))
def test_a_cut_answer_is_always_bad_data_naming_the_setting(rows, limit):
    text = alchemy_text(rows, limit)
    if "truncated" not in text:
        return
    with pytest.raises(ChartError) as info:
        decode_tool_result("c", "execute_query", as_mcpserver_str(text))
    assert info.value.error_type == "bad_data"
    assert "--server-env EXECUTE_QUERY_MAX_CHARS=" in info.value.message


@pytest.mark.parametrize(("text", "fragment"), [
    ("1. row\nmonth: 2024-01\n\n3. row\nmonth: 2024-02\n\nResult: 2 rows", "row 3 out of order"),
    ("1. row\nmonth: 2024-01\n\n2. row\nmonth: 2024-02\n\nResult: 3 rows", "says 3 rows but sent 2"),
    ("1. row\nmonth: 2024-01\nn: 1\n\n2. row\nmonth: 2024-02\n", "without their count"),
    ("1. row\nmonth: 2024-01\n\n2. row\nmonth: 2024-02\nn: 1\n\nResult: 2 rows", "no 'column: value': 'n: 1'"),
    ("1. row\nlabel: two\nlines\nn: 1\n\nResult: 1 rows", "no 'column: value': 'lines'"),
    ("→ Result (Cost: 0.00..0.01) [Rows: 1]", "tool q answered a query plan, not rows"),
    ("HashAggregate  (cost=1.0..2.0 rows=3 width=40)\n  ->  Seq Scan on orders", "a query plan"),
])
def test_broken_or_wrong_kinds_of_text_are_bad_data(text, fragment):
    with pytest.raises(ChartError) as info:
        decode_tool_result("c", "q", as_mcpserver_str(text))
    assert info.value.error_type == "bad_data" and fragment in info.value.message, info.value.message


def test_no_rows_is_an_empty_list():
    assert decode_tool_result("c", "q", as_mcpserver_str("No rows returned")) == []


def test_an_mcp1_servers_content_list_is_read_as_its_text():
    """postgres-mcp under mcp 1.x: structured content {"result": [one text item]}, its text a Python literal."""
    text = "[{'month': '2023-01', 'sales': Decimal('154400.52'), 'n': None}]"
    item = {"type": "text", "text": text, "annotations": None, "_meta": None}
    result = CallToolResult(content=[TextContent(type="text", text=text)], structured_content={"result": [item]})
    assert decode_tool_result("c", "execute_sql", result) == [{"month": "2023-01", "sales": "154400.52", "n": None}]
    two = CallToolResult(content=[], structured_content={"result": [item, item]})
    with pytest.raises(ChartError, match="tool execute_sql answered a list of 2 text items, not rows"):
        decode_tool_result("c", "execute_sql", two)


TEXT = {"type": "string"}


def tool(name: str, properties: dict[str, Any], required: list[str], **hints: bool) -> Tool:
    return Tool(name=name, input_schema={"type": "object", "properties": properties, "required": required},
                annotations=ToolAnnotations(**hints) if hints else None)


SQLITE_REFERENCE = [tool("read_query", {"query": TEXT}, ["query"]), tool("write_query", {"query": TEXT}, ["query"]),
                    tool("create_table", {"query": TEXT}, ["query"]), tool("list_tables", {}, []),
                    tool("describe_table", {"table_name": TEXT}, ["table_name"])]
POSTGRES_MCP = [tool("explain_query", {"sql": TEXT, "analyze": {"type": "boolean", "default": False}}, ["sql"]),
                tool("execute_sql", {"sql": {**TEXT, "default": "all"}}, []),
                tool("list_objects", {"schema_name": TEXT, "object_type": TEXT}, ["schema_name"])]


def test_a_query_tool_is_picked_as_a_person_would():
    picked = pick_query_tool(SQLITE_REFERENCE, None, None)
    assert picked == QueryTool("read_query", "query")
    assert picked.reason == "the only one of create_table, read_query, write_query named for reading; " \
                            "the others write, change tables or explain"
    assert "another with --query-tool and --query-argument" in picked.describe()
    assert pick_query_tool(POSTGRES_MCP, None, None) == QueryTool("execute_sql", "sql")  # not the plans
    marked = [tool("run_a", {"sql": TEXT}, ["sql"]), tool("run_b", {"sql": TEXT}, ["sql"], read_only_hint=True)]
    assert pick_query_tool(marked, None, None).name == "run_b"
    assert "marked read-only" in pick_query_tool(marked, None, None).reason
    camel = [tool("readQuery", {"query": TEXT}, ["query"]), tool("dropTable", {"query": TEXT}, ["query"])]
    assert pick_query_tool(camel, None, None).name == "readQuery"


@pytest.mark.parametrize("tools", [
    [tool("execute_query", {"sql": TEXT}, ["sql"], destructive_hint=True)],
    [tool("explain_query", {"sql": TEXT}, ["sql"])],
    [tool("write_query", {"query": TEXT}, ["query"]), tool("drop_table", {"query": TEXT}, ["query"])],
    [tool("a", {"sql": TEXT}, ["sql"], read_only_hint=True, destructive_hint=True)],
], ids=["destructive", "explain", "writers", "contradictory-hints"])
def test_a_tool_marked_destructive_or_named_for_writing_or_plans_is_never_picked_on_its_own(tools):
    with pytest.raises(UsageError, match="never picks such a tool on its own: name one with --query-tool"):
        pick_query_tool(tools, None, None)
    assert pick_query_tool(tools, tools[0].name, None).reason == "named by --query-tool"


def test_an_optional_argument_beside_others_is_never_the_sql_argument():
    optional = [tool("run", {"sql": {**TEXT, "default": ""}, "database": TEXT}, [])]
    with pytest.raises(UsageError, match="no tool of the server takes a SQL query"):
        pick_query_tool(optional, None, None)
    with pytest.raises(UsageError, match="cannot tell which argument takes the SQL"):
        pick_query_tool(optional, "run", None)

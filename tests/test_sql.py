"""SQL text, query-tool choice, result decoding and pivoting: the pieces behind SQL packs."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from mcp.types import CallToolResult, EmbeddedResource, TextContent, TextResourceContents, Tool

from runner.charts import Comparison, load_pack
from runner.errors import ChartError, UsageError
from runner.records import ChartJob
from runner.retrieval.parse import chart_data_from_json
from runner.retrieval.pivot import chart_payload, rows_of
from runner.retrieval.results import decode_tool_result
from runner.sql import QueryTool, inline, literal, pick_query_tool, placeholders

SQL_PACK = {spec.id: spec for spec in load_pack("business-review-sql").charts}
VALUES = {"merchant_token": "ABC123", "start_date": "2024-01-01", "end_date": "2024-06-30"}


def job(chart_id: str, start: str = "2024-01-01", end: str = "2024-06-30") -> ChartJob:
    return ChartJob("ABC123", SQL_PACK[chart_id], start, end, "/tmp/x.png")


def test_placeholders_skip_strings_identifiers_comments_and_casts():
    query = """SELECT ':not_me', ":nor_me", x::date -- :comment
               /* :block */ FROM t WHERE a = :merchant_token AND b = :start_date AND c = :merchant_token"""
    assert placeholders(query) == ["merchant_token", "start_date", "merchant_token"]
    filled = inline(query, VALUES)
    assert "a = 'ABC123' AND b = '2024-01-01' AND c = 'ABC123'" in filled
    assert "':not_me'" in filled and "x::date" in filled and ":comment" in filled


@pytest.mark.parametrize("value", ["x' OR '1'='1", "a\\b", "line\nbreak", True, float("nan"), None])
def test_values_that_could_leave_a_literal_are_refused(value):
    with pytest.raises(ValueError):
        literal(value)


def test_bound_parameters_leave_the_query_alone():
    tool = QueryTool("execute_query", "query", "params")
    sql = SQL_PACK["aov_by_month"].sql
    assert tool.arguments(sql, {**VALUES, "unused": 1}) == {"query": sql, "params": VALUES}


def _tool(name: str, properties: dict, required: list[str]) -> Tool:
    return Tool(name=name, input_schema={"type": "object", "properties": properties, "required": required})


def test_the_query_tool_is_found_from_its_schema():
    text = {"type": "string"}
    motherduck = [_tool("execute_query", {"sql": text}, ["sql"]), _tool("list_tables", {"database": text}, [])]
    assert pick_query_tool(motherduck, None, None) == QueryTool("execute_query", "sql")
    alchemy = [_tool("execute_query", {"query": text, "params": {"anyOf": [{"type": "object"}, {"type": "null"}]}},
                     ["query"]), _tool("schema_definitions", {"table_names": {"type": "array"}}, ["table_names"])]
    assert pick_query_tool(alchemy, None, None) == QueryTool("execute_query", "query", "params")
    two = [*motherduck, _tool("read_query", {"query": text}, ["query"])]
    with pytest.raises(UsageError, match="several tools could run SQL: execute_query, read_query"):
        pick_query_tool(two, None, None)
    assert pick_query_tool(two, "read_query", None).argument == "query"
    with pytest.raises(UsageError, match="no such tool"):
        pick_query_tool(two, "nope", None)
    custom = [_tool("run", {"text": text, "db": text}, ["text", "db"])]
    with pytest.raises(UsageError, match="no tool of the server takes a SQL query"):
        pick_query_tool(custom, None, None)
    assert pick_query_tool(custom, None, "text") == QueryTool("run", "text")


def _text(body: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=body)])


ROWS = [{"month": "2024-01", "aov": 10.5}, {"month": "2024-03", "aov": 7}]


@pytest.mark.parametrize("result", [
    CallToolResult(content=[], structured_content={"rows": ROWS}),
    _text(json.dumps(ROWS)),
    _text(json.dumps({"columns": ["MONTH", "AOV"], "rows": [["2024-01-15", "10.50"], ["2024-03-01", 7]]})),
    CallToolResult(content=[], structured_content={"result": json.dumps(ROWS)}),
    _text("[{'month': datetime.date(2024, 1, 31), 'aov': Decimal('10.5')}, {'month': '2024-03', 'aov': 7}]"),
    _text("[('2024-01', 10.5), ('2024-03', 7)]"),
    CallToolResult(content=[EmbeddedResource(type="resource", resource=TextResourceContents(
        uri="data://r", mime_type="application/json", text=json.dumps(ROWS)))]),
], ids=["structured", "json", "columns-rows", "wrapped", "python-dicts", "python-tuples", "resource"])
def test_every_format_gives_the_same_chart(result):
    spec = SQL_PACK["aov_by_month"]  # a line: a month without orders has no average, so a gap
    payload = chart_payload(spec, job(spec.id), rows_of(spec, decode_tool_result(spec.id, "q", result)))
    assert payload == {"labels": ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06"],
                       "series": [{"name": "AOV", "values": [10.5, None, 7, None, None, None]}], "unit": "EUR"}
    chart_data_from_json(spec, "ABC123", payload)


def test_missing_months_are_filled_as_the_kind_requires():
    bars = SQL_PACK["sales_by_product_type"]
    rows = [{"month": "2024-02", "product": "Pay in 3", "sales": 5}, {"month": "2024-01", "product": "Pay in 4",
                                                                      "sales": 2}]
    payload = chart_payload(bars, job(bars.id, end="2024-03-31"), rows)
    assert payload["series"] == [{"name": "Pay in 3", "values": [0.0, 5, 0.0]},
                                 {"name": "Pay in 4", "values": [2, 0.0, 0.0]}]
    yoy = replace(SQL_PACK["monthly_sales_yoy"], compare=Comparison.NONE)  # the window alone
    payload = chart_payload(yoy, ChartJob("ABC123", yoy, "2024-11-01", "2025-02-28", "/tmp/x.png"),
                            [{"month": "2024-12", "sales": 3}])
    assert payload["series"] == [{"name": "2024", "values": [None] * 10 + [0.0, 3]},
                                 {"name": "2025", "values": [0.0, 0.0] + [None] * 10}]


@pytest.mark.parametrize(("result", "error_type", "fragment"), [
    (_text("Error: no such table: orders"), "tool_error", "no such table"),
    (_text("Database error: near \"SELEC\": syntax error"), "tool_error", "syntax error"),
    (_text(json.dumps({"success": False, "error": "Binder Error"})), "tool_error", "Binder Error"),
    (_text(json.dumps({"success": True, "columns": ["month"], "rows": [["2024-01"]], "truncated": True,
                       "warning": "Results limited to 1 rows"})), "bad_data", "cut the result short"),
    (_text("[__import__('os').system('true')]"), "bad_data", "neither JSON nor a Python literal"),
    (_text("[" * 100_000), "bad_data", "neither JSON nor a Python literal"),
    (_text(json.dumps([{"month": "2024-01", "aov": "lots"}])), "bad_data", "'lots', not a number"),
    (_text(json.dumps([{"month": "2024-01", "aov": 1}, {"month": "2024-01-01", "aov": 2}])), "bad_data",
     "repeats"),
    (_text(json.dumps([{"month": "2024-01", "amount": 1}])), "bad_data", "no column 'AOV'"),
    (_text(json.dumps([{"month": "2024-12-01", "aov": 1}, {"month": "2024-13-01", "aov": 2}])), "bad_data",
     "row 1: column 'month' holds '2024-13-01', whose month is not 01-12"),
    (_text(json.dumps([{"month": "2024-01", "aov": "1e999"}])), "bad_data", "('1e999') is inf, not a finite number"),
    (_text('[{"month": "2024-01", "aov": ' + "9" * 400 + "}]"), "bad_data", "(an integer of 400 digits)"),
    (_text(json.dumps({"data_source": "x"})), "bad_data", "expected rows"),
])
def test_bad_answers_fail_with_a_reason(result, error_type, fragment):
    spec = SQL_PACK["aov_by_month"]
    with pytest.raises(ChartError) as info:
        chart_payload(spec, job(spec.id), rows_of(spec, decode_tool_result(spec.id, "q", result)))
    assert info.value.error_type == error_type and fragment in info.value.message


def test_a_huge_structured_result_is_refused_like_huge_text():
    spec = SQL_PACK["aov_by_month"]
    huge = CallToolResult(content=[], structured_content={"rows": [{"month": "2024-01", "aov": 1.5}] * 150_000})
    with pytest.raises(ChartError, match="structured result of more than 2,000,000 characters") as info:
        decode_tool_result(spec.id, "q", huge)
    assert info.value.error_type == "bad_data"


def test_no_rows_is_empty_data():
    for spec in SQL_PACK.values():
        with pytest.raises(ChartError) as info:
            chart_data_from_json(spec, "ABC123", chart_payload(spec, job(spec.id), []))
        assert info.value.error_type == "empty_data", spec.id

"""Answers in plain text that are not JSON: numbered rows, and what a wrong tool sends instead.

mcp-alchemy (SQLAlchemy: any database with a driver) sends a query's rows as numbered blocks,
every value as `str()` of it and a null as the text NULL, then a count:

    1. row
    month: 2024-01
    sales: 1520.50

    2. row
    ...
    Result: 2 rows

It cuts the text at its EXECUTE_QUERY_MAX_CHARS (4,000 characters by default) and then ends with
"Result: showing first N rows (output truncated)": a chart from part of its rows would be a
wrong chart, so that is bad data naming the setting. A tool that explains queries instead of
running them (postgres-mcp's explain_query) sends a plan; that is named too, with the tool.
"""

from __future__ import annotations

import re
from typing import Any

from runner.errors import one_line
from runner.retrieval.parse import bad_data

NO_ROWS = "No rows returned"
NULL = "NULL"  # how mcp-alchemy writes a null (a text value "NULL" reads as null too: it cannot tell)
TRUNCATION_SETTING = "EXECUTE_QUERY_MAX_CHARS"
_HEADER = re.compile(r"^(\d+)\. row$")
_FOOTER = re.compile(r"^Result: (?:showing first )?(\d+) rows?( \(output truncated\))?$")
_FIELD = re.compile(r"^([^:\n]{1,200}): (.*)$|^([^:\n]{1,200}):$")
# A Postgres plan line, as EXPLAIN prints it ("Seq Scan on orders  (cost=0.00..1.01 rows=1 width=4)")
# or as postgres-mcp's explain_query does ("→ Result (Cost: 0.00..0.01) [Rows: 1]").
_PLAN = re.compile(r"^\W{0,4}[A-Z][\w ]{1,60}\((?:cost=|Cost: )\d")


def claims(text: str) -> bool:
    """Whether the text is in a format this module reads (or refuses by name)."""
    first = text.lstrip().split("\n", 1)[0].rstrip()
    return first in ("1. row", NO_ROWS) or bool(_FOOTER.match(first) or _PLAN.match(first))


def _field(line: str, expected: str | None) -> tuple[str, str] | None:
    """`name: value`, when the line starts a field: for rows after the first, the field the
    first row had at this place (so a value holding ': ' cannot pose as a new column)."""
    if expected is not None:
        if line == f"{expected}:" or line.startswith(f"{expected}: "):
            return expected, line[len(expected) + 2:]
        return None
    match = _FIELD.match(line)
    if not match:
        return None
    return (match[1], match[2]) if match[1] is not None else (match[3], "")


def decode(what: str, tool: str, text: str) -> list[dict[str, Any]]:
    """The rows of a numbered-rows answer, values as text (None for NULL); ChartError for a cut
    answer, a query plan, or text that breaks the format."""
    lines = text.strip().replace("\r\n", "\n").split("\n")
    if _PLAN.match(lines[0]):
        raise bad_data(what, f"tool {tool} answered a query plan, not rows: it explains queries instead of running "
                             f"them; the run's log says why it was picked as the query tool; name the tool that "
                             f"runs SQL with --query-tool and --query-argument")
    if lines == [NO_ROWS]:
        return []
    cut = next((match for line in lines if (match := _FOOTER.match(line)) and match[2]), None)
    if cut:  # whatever the rows before it hold, they are not all of them
        raise bad_data(what, f"tool {tool} cut its answer short after {cut[1]} rows (output truncated): raise the "
                             f"server's {TRUNCATION_SETTING}, e.g. --server-env {TRUNCATION_SETTING}=1000000, or "
                             "aggregate more in the SQL")
    rows: list[dict[str, Any]] = []
    last: str | None = None  # the previous line's field; None at a row's start or after an empty line
    for number, line in enumerate(lines, 1):
        footer = _FOOTER.match(line) if last is None else None
        if footer:
            if int(footer[1]) != len(rows):
                raise bad_data(what, f"tool {tool} says {footer[1]} rows but sent {len(rows)}")
            return _same_columns(what, tool, rows)
        header = _HEADER.match(line) if last is None else None
        if header:
            if int(header[1]) != len(rows) + 1:
                raise bad_data(what, f"line {number} of tool {tool}'s numbered rows: row {header[1]} out of order")
            rows.append({})
            continue
        if not line:  # a row ends with an empty line; the next starts a row or is the count
            last = None
            continue
        row = rows[-1] if rows else None
        columns = list(rows[0]) if len(rows) > 1 else None
        expected = None if columns is None or row is None else columns[len(row)] if len(row) < len(columns) else ""
        found = _field(line, expected) if row is not None and expected != "" else None
        if row is None or not found or found[0] in row:  # a value with a line break is unreadable: refused
            raise bad_data(what, f"line {number} of tool {tool}'s numbered rows is no 'column: value': "
                                 f"'{one_line(line, 60)}'")
        row[found[0]] = None if found[1] == NULL else found[1]
        last = found[0]
    raise bad_data(what, f"tool {tool}'s numbered rows end without their count ('Result: N rows'): the answer "
                         "may have been cut short")


def _same_columns(what: str, tool: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for index, row in enumerate(rows[1:], 2):
        if list(row) != list(rows[0]):
            raise bad_data(what, f"tool {tool}'s row {index} has columns {', '.join(row) or 'none'}, "
                                 f"not {', '.join(rows[0])}")
    return rows


_CONTENT_KEYS = {"type", "text", "annotations", "_meta", "meta"}


def text_item(what: str, tool: str, value: Any) -> str | None:
    """The text of a list of MCP text-content items, as an mcp 1.x server's structured content
    wraps a tool's content list (postgres-mcp: {"result": [{"type": "text", "text": "[...]"}]});
    None when the value is no such list. Several items are not one table of rows."""
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str)
               and set(item) <= _CONTENT_KEYS for item in value):
        return None
    if len(value) > 1:
        raise bad_data(what, f"tool {tool} answered a list of {len(value)} text items, not rows; the run's log says "
                             "why it was picked as the query tool; name another with --query-tool")
    return str(value[0]["text"])

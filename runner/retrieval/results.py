"""What a tool's answer holds, whatever the server's habit of sending it.

Real MCP servers answer a query in many ways: structured content; JSON text; JSON wrapped as
{"result": "<json text>"} (FastMCP and MCPServer, for a `str` return); a Python literal
(`str(rows)`, with Decimal and date calls inside); an embedded JSON resource; and error text
from servers that do not flag their errors. This module turns each into plain JSON values,
or a ChartError that says what was wrong.
"""

from __future__ import annotations

import ast
import datetime
import json
import re
from typing import Any

from runner.errors import ChartError, ErrorType, detail, one_line
from runner.retrieval import text_rows

MAX_RESULT_CHARS = 2_000_000
# Servers that do not flag errors say so in the first words: "Error: ...", "Database error: ...".
_ERROR_TEXT = re.compile(r"^\s*(?:[\w ]{0,30}\s)?(?:error|exception)\b[^:\n]{0,40}:", re.IGNORECASE)
_CALLS = {"Decimal", "date", "datetime", "time"}  # the calls a Python literal of rows may hold


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def _too_big(what: str, text: str) -> None:
    if len(text) > MAX_RESULT_CHARS:
        raise ChartError(ErrorType.BAD_DATA, f"{what}: result of {len(text):,} characters exceeds the "
                                             f"{MAX_RESULT_CHARS:,} limit")


def _structured_size(value: Any, limit: int) -> int:
    """About how many characters a structured result would take as JSON, counted item by item
    and no further than just past `limit`: a huge answer is refused before anything copies it."""
    size, stack = 0, [value]
    while stack and size <= limit:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
            size += 2 + sum(len(str(key)) + 4 for key in item)
        elif isinstance(item, list):
            stack.extend(item)
            size += 2 + len(item)
        elif isinstance(item, int):  # str() of a huge integer is slow, and past 4,300 digits raises
            size += item.bit_length() * 3 // 10 + 1
        else:
            size += len(str(item))
    return size


def decode_json_text(what: str, text: str) -> Any:
    """Parse JSON text from a tool or a model; `what` names the source in the error."""
    _too_big(what, text)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # deep nesting is an attack, not JSON we can use
        raise ChartError(ErrorType.BAD_DATA, f"{what}: result is not valid JSON ({exc}); "
                                             f"it starts with '{one_line(text, 60)}'") from None


def _literal(node: ast.AST) -> Any:
    """ast.literal_eval's job, plus Decimal('1.5') -> "1.5" and date(2024, 1, 5) -> "2024-01-05"
    (what `str()` of database rows holds). Nothing is ever evaluated."""
    match node:
        case ast.Constant(value=value) if not isinstance(value, bytes | complex):
            return value
        case ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=int() | float() as number)):
            return -number
        case ast.List(elts=items) | ast.Tuple(elts=items):
            return [_literal(item) for item in items]
        case ast.Dict(keys=keys, values=values) if all(key is not None for key in keys):
            return {_literal(key): _literal(value) for key, value in zip(keys, values, strict=True) if key}
        case ast.Call(func=ast.Name(id=name) | ast.Attribute(attr=name), args=args, keywords=[]) if name in _CALLS:
            parts = [_literal(arg) for arg in args]
            if name == "Decimal" and len(parts) == 1 and isinstance(parts[0], str):
                return parts[0]
            if all(isinstance(p, int) for p in parts):
                kind = {"date": datetime.date, "datetime": datetime.datetime, "time": datetime.time}.get(name)
                if kind is not None:
                    return kind(*parts).isoformat()
    raise ValueError(f"{type(node).__name__} is not a literal")


def decode_python_literal(what: str, text: str) -> Any:
    _too_big(what, text)
    try:
        return _literal(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        raise ChartError(ErrorType.BAD_DATA, f"{what}: result is neither JSON nor a Python literal "
                                             f"({type(exc).__name__}); it starts with '{one_line(text, 60)}'") from None


def decode_text(what: str, tool: str, text: str) -> Any:
    """JSON text, else a Python literal of rows, else (if it reads like one) an error message."""
    if _ERROR_TEXT.match(text):
        raise ChartError(ErrorType.TOOL_ERROR, f"tool {tool} reported an error: {detail(text.strip())}")
    if text_rows.claims(text):  # numbered rows (mcp-alchemy), a query plan
        _too_big(what, text)
        return text_rows.decode(what, tool, text)
    try:
        return unwrap(what, tool, decode_json_text(what, text))
    except ChartError:
        if text.lstrip()[:1] in ("[", "("):
            return decode_python_literal(what, text)
        raise


def unwrap(what: str, tool: str, payload: Any) -> Any:
    """Undo FastMCP's and MCPServer's wrapping of a non-object return: {"result": <value>}."""
    if isinstance(payload, dict) and list(payload) == ["result"]:
        inner = payload["result"]
        if (item := text_rows.text_item(what, tool, inner)) is not None:  # an mcp 1.x server's content list
            inner = item
        return decode_text(what, tool, inner) if isinstance(inner, str) else inner
    return payload


def _resource_text(block: Any) -> str | None:
    resource = getattr(block, "resource", None)
    mime = (getattr(resource, "mime_type", None) or getattr(resource, "mimeType", None) or "").lower()
    text = getattr(resource, "text", None)
    return text if isinstance(text, str) and (not mime or "json" in mime or mime.startswith("text/")) else None


def decode_tool_result(what: str, tool: str, result: Any) -> Any:
    """The JSON payload of an MCP CallToolResult."""
    if getattr(result, "is_error", False):
        text = " ".join(getattr(block, "text", "") for block in result.content or [])
        said = detail(text.strip()) or "no detail"
        raise ChartError(ErrorType.TOOL_ERROR, f"tool {tool} reported an error: {said}")
    structured = getattr(result, "structured_content", None)
    if isinstance(structured, dict) and structured:
        if _structured_size(structured, MAX_RESULT_CHARS) > MAX_RESULT_CHARS:  # the same limit as for text
            raise ChartError(ErrorType.BAD_DATA, f"{what}: structured result of more than {MAX_RESULT_CHARS:,} "
                                                 "characters exceeds the limit")
        return unwrap(what, tool, structured)
    for block in result.content or []:
        kind = getattr(block, "type", None)
        if kind == "text":
            return decode_text(what, tool, block.text)
        if kind == "resource" and (embedded := _resource_text(block)) is not None:
            return decode_text(what, tool, embedded)
    raise ChartError(ErrorType.EMPTY_DATA, f"{what}: tool {tool} returned no text or JSON content")

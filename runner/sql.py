"""SQL text: `:name` placeholders, how their values reach a server, and which tool runs SQL.

A chart's query names its values as `:merchant_token`, `:start_date`, `:end_date` or a key of
its pack's `params`. A query tool that takes an object of bound parameters gets them bound;
otherwise each value is inlined as a SQL literal, and only values that cannot break out of
one are accepted (tokens and dates are validated before any work; params at pack load).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.errors import UsageError

Param = str | int | float
FIXED_PARAMS = ("merchant_token", "start_date", "end_date")
QUERY_ARGUMENTS = ("query", "sql", "statement")  # names a generic query tool gives its SQL argument
MAX_QUERY_CHARS = 20_000

# Strings, quoted identifiers and comments are skipped whole, and `::` (a Postgres cast) is no
# placeholder; what is left of `:name` is one.
_LEXEMES = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|::|:([A-Za-z_][A-Za-z0-9_]*)""",
                      re.DOTALL)
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Text that stays text inside '...' in every dialect: no quote, no backslash, no control character.
_LITERAL_TEXT = re.compile(r"^[^'\\\x00-\x1f\x7f]{0,200}$")


def placeholders(query: str) -> list[str]:
    """The placeholder names of a query, in order of appearance (repeats kept)."""
    return [m[1] for m in _LEXEMES.finditer(query) if m[1]]


def _placeholder_of(value: Any) -> str | None:
    """A tool argument written as a placeholder (":merchant_token") names it; else None."""
    if isinstance(value, str) and value.startswith(":") and _PARAM_NAME.match(value[1:]):
        return value[1:]
    return None


def check_params(raw: Any, where: str) -> dict[str, Param]:
    """A pack's or chart's `params` table: names for placeholders, values safe as literals."""
    if not isinstance(raw, dict):
        raise UsageError(f"{where} must be a table of name = value")
    out: dict[str, Param] = {}
    for name, value in raw.items():
        if not _PARAM_NAME.match(str(name)):
            raise UsageError(f"{where}: {name!r} is not a parameter name (letters, digits and _)")
        if name in FIXED_PARAMS:
            raise UsageError(f"{where}: {name} is set by the run, not by the pack")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise UsageError(f"{where}: {name} must be text or a number, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{where}: {name} = {value} is not a finite number")
        if isinstance(value, str) and not _LITERAL_TEXT.match(value):
            raise UsageError(f"{where}: {name} = {value[:40]!r} may not hold quotes, backslashes or control "
                             "characters, and at most 200 characters")
        out[name] = value
    return out


def _check_names(used: Iterable[str], known: set[str], where: str) -> None:
    used = list(used)
    unknown = sorted(set(used) - known)
    if unknown:
        raise UsageError(f"{where} uses :{unknown[0]}, which is neither {', '.join(FIXED_PARAMS)} "
                         "nor a key of the pack's or chart's params")
    if "merchant_token" not in used:
        raise UsageError(f"{where} must use :merchant_token, or every merchant would get the same numbers")


def check_query(query: str, known: set[str], where: str) -> None:
    if len(query) > MAX_QUERY_CHARS:
        raise UsageError(f"{where} is {len(query):,} characters long (at most {MAX_QUERY_CHARS:,})")
    _check_names(placeholders(query), known, where)


def check_arguments(arguments: Mapping[str, Any], known: set[str], where: str) -> None:
    """Tool arguments either use placeholders (sent exactly as written) or none (the run adds
    merchant_token, start_date and end_date, as chart tools built for the runner expect)."""
    used = [name for name in map(_placeholder_of, arguments.values()) if name]
    if used:
        _check_names(used, known, where)
        return
    fixed = sorted(set(FIXED_PARAMS) & set(arguments))
    if fixed:
        raise UsageError(f"{where} may not set {', '.join(fixed)} to a fixed value (use \":{fixed[0]}\")")


def fill_arguments(arguments: Mapping[str, Any], values: Mapping[str, Param]) -> dict[str, Any]:
    if not any(_placeholder_of(v) for v in arguments.values()):
        return {**arguments, **{name: values[name] for name in FIXED_PARAMS}}
    return {key: values[name] if (name := _placeholder_of(v)) else v for key, v in arguments.items()}


def literal(value: Param) -> str:
    """A value as a SQL literal. Anything that could leave the literal is refused outright:
    the callers validated it already, so reaching here with one is a bug, never a splice."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"no SQL literal for {type(value).__name__}")
    if isinstance(value, str):
        if not _LITERAL_TEXT.match(value):
            raise ValueError(f"refusing to inline {value[:40]!r} into SQL")
        return f"'{value}'"
    if not math.isfinite(value):
        raise ValueError(f"refusing to inline {value} into SQL")
    return repr(value)


def inline(query: str, values: Mapping[str, Param]) -> str:
    return _LEXEMES.sub(lambda m: literal(values[m[1]]) if m[1] else m[0], query)


def used_values(query: str, values: Mapping[str, Param]) -> dict[str, Param]:
    return {name: values[name] for name in dict.fromkeys(placeholders(query))}


@dataclass(frozen=True)
class QueryTool:
    """The server's tool that runs SQL, the argument that takes it, the argument (if any) that
    takes an object of bound parameters, and why this tool was picked (for the log and errors)."""

    name: str
    argument: str
    params_argument: str | None = None
    reason: str = field(default="", compare=False)

    def arguments(self, query: str, values: Mapping[str, Param]) -> dict[str, Any]:
        if self.params_argument:
            return {self.argument: query, self.params_argument: used_values(query, values)}
        return {self.argument: inline(query, values)}

    def describe(self) -> str:
        how = f"parameters bound through {self.params_argument!r}" if self.params_argument else "values inlined"
        why = f" ({self.reason}; {OVERRIDE})" if self.reason else ""
        return f"{self.name}({self.argument}) with {how}{why}"


class Role(enum.Enum):
    """What a tool that takes SQL is for, by its annotations and, failing those, its name."""

    READS = "reads"  # marked read-only, or named for reading
    RUNS = "runs"  # neither marked nor named either way (execute_sql, run_sql)
    WRITES = "writes"  # marked destructive, or named for writing or DDL
    EXPLAINS = "explains"  # named for query plans: its answer is never rows


OVERRIDE = "another with --query-tool and --query-argument"
_READING = {"read", "select", "query"}
_WRITING = {"write", "create", "insert", "update", "delete", "drop", "alter"}
_EXPLAINING = {"explain", "plan"}
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def _words(name: str) -> set[str]:
    """A tool name's words, whatever its case style: readQuery, read_query, READ-QUERY."""
    return {word.lower() for word in _WORD.findall(name)}


def _hint(tool: Any, name: str) -> bool | None:
    value = getattr(getattr(tool, "annotations", None), name, None)
    return value if isinstance(value, bool) else None


def role(tool: Any) -> Role:
    words = _words(str(tool.name))
    if _hint(tool, "destructive_hint") is True or words & _WRITING:
        return Role.WRITES
    if words & _EXPLAINING:
        return Role.EXPLAINS
    if _hint(tool, "read_only_hint") is True or words & _READING:
        return Role.READS
    return Role.RUNS


def _schema(tool: Any) -> tuple[dict[str, Any], list[str]]:
    schema = getattr(tool, "input_schema", None) or {}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    required = schema.get("required") if isinstance(schema, dict) else None
    return (properties if isinstance(properties, dict) else {}), (required if isinstance(required, list) else [])


def _takes(prop: Any, kind: str) -> bool:
    """Whether a JSON-schema property accepts `kind` (directly, in a type list, or in anyOf)."""
    if not isinstance(prop, dict):
        return False
    declared = prop.get("type")
    if declared == kind or (isinstance(declared, list) and kind in declared):
        return True
    return any(_takes(sub, kind) for key in ("anyOf", "oneOf") for sub in prop.get(key) or [])


def _query_argument(tool: Any) -> str | None:
    """The tool's SQL argument: a string named like one that is its one required argument, or
    its only argument at all (postgres-mcp's execute_sql gives `sql` a default). An optional
    argument beside others (explain_query's `analyze`, mcp-alchemy's `params`) never is."""
    properties, required = _schema(tool)
    names = required if required else list(properties)
    if len(names) == 1 and names[0] in QUERY_ARGUMENTS and _takes(properties.get(names[0]), "string"):
        return str(names[0])
    return None


def _as_query_tool(tool: Any, argument: str, reason: str) -> QueryTool:
    properties, _ = _schema(tool)
    objects = [name for name, prop in properties.items() if name != argument and _takes(prop, "object")]
    return QueryTool(tool.name, argument, objects[0] if len(objects) == 1 else None, reason)


def _choose(candidates: list[Any]) -> tuple[Any, str]:
    """The tool a person would pick among those that take SQL, and why; UsageError if none is clear.

    Exactly one marked read-only wins; else exactly one left once the tools marked destructive
    or named for writing, DDL or query plans are set aside. Such a tool is never picked on its own.
    """
    names = ", ".join(sorted(t.name for t in candidates))
    read_only = [t for t in candidates if _hint(t, "read_only_hint") is True and role(t) is not Role.WRITES]
    if len(candidates) > 1 and len(read_only) == 1:
        return read_only[0], f"the only one of {names} marked read-only"
    usable = [t for t in candidates if role(t) in (Role.READS, Role.RUNS)]
    if len(usable) == 1:
        (tool,) = usable
        if len(candidates) == 1:
            return tool, "the only tool that takes SQL"
        named = "named for reading" if role(tool) is Role.READS else "not named for writing, DDL or query plans"
        return tool, f"the only one of {names} {named}; the others write, change tables or explain"
    if usable:
        raise UsageError(f"several tools could run SQL: {', '.join(sorted(t.name for t in usable))}; "
                         "pick one with --query-tool")
    kinds = ", ".join(f"{t.name} ({role(t).value})" for t in sorted(candidates, key=lambda t: t.name))
    raise UsageError(f"the tools that take SQL are marked destructive or named for writing, DDL or query plans: "
                     f"{kinds}; the runner never picks such a tool on its own: name one with --query-tool")


def pick_query_tool(tools: list[Any], name: str | None, argument: str | None) -> QueryTool:
    """The query tool named by the settings, or the one a person would pick from the schemas,
    annotations and names of the server's tools."""
    by_name = {tool.name: tool for tool in tools}
    if name:
        tool = by_name.get(name)
        if tool is None:
            raise UsageError(f"--query-tool {name!r}: the server has no such tool (it has: "
                             f"{', '.join(sorted(by_name)) or 'none'})")
        properties, _ = _schema(tool)
        if argument and argument not in properties:
            raise UsageError(f"--query-argument {argument!r}: tool {name} has no such argument "
                             f"(it has: {', '.join(properties) or 'none'})")
        chosen = argument or _query_argument(tool)
        if not chosen:
            raise UsageError(f"tool {name}: cannot tell which argument takes the SQL; pass --query-argument "
                             f"(it has: {', '.join(properties) or 'none'})")
        return _as_query_tool(tool, chosen, "named by --query-tool")
    if argument:
        arguments = {t.name: argument for t in tools
                     if argument in _schema(t)[0] and _takes(_schema(t)[0][argument], "string")}
    else:
        arguments = {t.name: arg for t in tools if (arg := _query_argument(t))}
    if not arguments:
        raise UsageError("no tool of the server takes a SQL query (one required string argument named "
                         f"{', '.join(QUERY_ARGUMENTS)}); its tools: {', '.join(sorted(by_name)) or 'none'}; "
                         "pass --query-tool and --query-argument")
    tool, reason = _choose([by_name[tool_name] for tool_name in arguments])
    return _as_query_tool(tool, arguments[tool.name], reason)

"""Chart specs: the built-in packs (tool-based and SQL) and loading a user's pack file."""

from __future__ import annotations

import json
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from runner import sql
from runner.errors import UsageError
from runner.figures import KeyFigure, check_figures, check_pack_id, figure_from_mapping, pack_table
from runner.files import read_input_text
from runner.kinds import KINDS, ChartKind, Comparison, Shape
from runner.sql import Param

COLUMN_KEYS = ("x", "series", "group", "label", "value")

MAX_PACK_BYTES = 2_000_000
MAX_PACK_CHARTS = 200
MAX_ARGUMENT_DEPTH = 8  # tables or lists inside a tool's arguments

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True)
class ChartSpec:
    id: str
    title: str
    tool: str  # the chart's own tool; "" for a SQL chart
    kind: str
    request: str  # what agent mode asks the model for, in plain words
    y_label: str = ""
    counts: bool = False  # values are counts: negative ones are bad data
    arguments: tuple[tuple[str, Any], ...] = ()  # tool arguments; see runner.sql for placeholders
    sql: str = ""  # a query sent through the server's query tool instead of a chart tool
    columns: tuple[tuple[str, str], ...] = ()  # SQL charts: role (x, series, ...) -> result column
    unit: str = ""  # SQL charts: the unit of the values (tools say it in their answer)
    params: tuple[tuple[str, Param], ...] = ()  # values for :name placeholders beyond the fixed three
    compare: Comparison = Comparison.NONE

    @property
    def chart_kind(self) -> ChartKind:
        return KINDS[self.kind]

    @property
    def shape(self) -> Shape:
        return KINDS[self.kind].shape

    @property
    def source(self) -> str:
        """Where the data comes from, for logs and errors: the tool, or "sql"."""
        return self.tool or "sql"

    def column(self, role: str) -> str | None:
        return dict(self.columns).get(role)

    def retrieval_start(self, start_date: str) -> str:
        """The first day retrieved for a window starting at `start_date`: a year earlier when the
        chart compares with the previous year (tool arguments and SQL's :start_date get it)."""
        if self.compare is Comparison.PREVIOUS_YEAR:
            day = date.fromisoformat(start_date)
            return (day.replace(year=day.year - 1, day=min(day.day, 28)) if day.month == 2 and day.day == 29
                    else day.replace(year=day.year - 1)).isoformat()
        return start_date


@dataclass(frozen=True)
class Pack:
    """A chart pack: its charts, the key figures of its summary slide, and (SQL packs) the query
    that lists merchants with their names."""

    charts: tuple[ChartSpec, ...]
    figures: tuple[KeyFigure, ...] = ()
    merchants_sql: str = ""


BUILTIN_PACK: tuple[ChartSpec, ...] = (
    ChartSpec(
        id="monthly_sales_yoy",
        title="Monthly sales, year over year",
        tool="get_monthly_sales_yoy",
        kind="yoy_lines",
        request="monthly sales year over year: total order amount per calendar month, one series per year",
        y_label="Sales (EUR)",
        compare=Comparison.PREVIOUS_YEAR,
    ),
    ChartSpec(
        id="sales_by_product_type",
        title="Monthly sales by product type",
        tool="get_monthly_sales_by_product_type",
        kind="stacked_bars",
        request="monthly sales by product type (pay in 3 / pay in 4) over time",
        y_label="Sales (EUR)",
    ),
    ChartSpec(
        id="orders_by_user_type",
        title="Monthly orders by user type",
        tool="get_monthly_orders_by_user_type",
        kind="stacked_bars",
        request="monthly number of orders by user type (network / returning / new)",
        y_label="Orders",
        counts=True,
        compare=Comparison.PREVIOUS_YEAR,
    ),
    ChartSpec(
        id="aov_by_month",
        title="Average order value by month",
        tool="get_aov_by_month",
        kind="line",
        request="average order value (AOV) per month",
        y_label="AOV (EUR)",
    ),
    ChartSpec(
        id="user_demographics",
        title="Customer demographics",
        tool="get_user_demographics",
        kind="breakdown",
        request="share of customers by age band, gender and card type, in percent",
        y_label="Share of customers (%)",
    ),
    ChartSpec(
        id="orders_by_product_type",
        title="Orders by product type",
        tool="get_orders_by_product_type",
        kind="share_bars",
        request="number of orders by product type (pay in 3 / pay in 4) with their shares",
        y_label="Orders",
        counts=True,
    ),
    ChartSpec(
        id="aov_by_product_type",
        title="Average order value by product type",
        tool="get_aov_by_product_type",
        kind="bars",
        request="average order value by product type (pay in 3 / pay in 4)",
        y_label="AOV (EUR)",
    ),
)


# The summary slide of both built-in packs (the SQL pack declares the same in its file).
BUILTIN_FIGURES: tuple[KeyFigure, ...] = (
    KeyFigure("sales", "Total sales", chart="monthly_sales_yoy"),
    KeyFigure("orders", "Orders", chart="orders_by_user_type"),
    KeyFigure("aov", "Average order value", ratio=("sales", "orders")),
    KeyFigure("new_customer_orders", "Orders from new customers", chart="orders_by_user_type", series="New",
              share_of="orders"),
)

_FIELDS = {"id", "title", "tool", "sql", "kind", "request", "y_label", "counts", "arguments", "unit", "params",
           "compare", *COLUMN_KEYS}


def _printable(text: str) -> bool:
    """Text without control characters. A private-use character (a brand's icon font) is text too:
    str.isprintable() says otherwise."""
    return all(ch.isprintable() or unicodedata.category(ch) == "Co" for ch in text)


def _text_field(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str):
        raise UsageError(f"{where}: {key!r} must be text, got {type(value).__name__}")
    return value.strip()


def _columns(entry: dict[str, Any], chart_id: str, kind: str, where: str) -> tuple[tuple[str, str], ...]:
    required, optional = KINDS[kind].columns
    given = {key: _text_field(entry, key, where) for key in COLUMN_KEYS if key in entry}
    missing = [key for key in required if not given.get(key)]
    if missing:
        raise UsageError(f"{where}: SQL chart {chart_id!r} of kind {kind} must name its result columns "
                         f"{', '.join(required)} (missing: {', '.join(missing)})")
    allowed = set(required) | set(optional)
    extra = sorted(set(given) - allowed)
    if extra:
        raise UsageError(f"{where}: chart {chart_id!r} of kind {kind} has no use for column(s) {', '.join(extra)}")
    return tuple((key, given[key]) for key in (*required, *optional) if given.get(key))


def _depth(value: Any) -> int:
    """How deeply tables and lists nest (iteratively: a hostile pack may nest thousands deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _spec_from_mapping(entry: Any, where: str, pack_params: dict[str, Param]) -> ChartSpec:
    entry = pack_table(entry, _FIELDS, "chart", where)
    for key in ("id", "title", "kind"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise UsageError(f"{where}: field {key!r} is required and must be text")
    chart_id, kind = entry["id"].strip(), entry["kind"].strip()
    tool, query = _text_field(entry, "tool", where), _text_field(entry, "sql", where)
    check_pack_id(chart_id, "chart", where)
    where = f"{where} ({chart_id})"
    if kind not in KINDS:
        raise UsageError(f"{where}: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    if bool(tool) == bool(query):
        raise UsageError(f"{where}: give either 'tool' or 'sql', {'not both' if tool else 'one is required'}")
    if tool and not _TOOL_NAME.match(tool):
        raise UsageError(f"{where}: invalid tool name {tool!r}")
    params = {**pack_params, **sql.check_params(entry.get("params", {}), f"{where}: params")}
    known = set(sql.FIXED_PARAMS) | set(params)
    arguments = entry.get("arguments", {})
    if not isinstance(arguments, dict):
        raise UsageError(f"{where}: 'arguments' must be a table")
    if _depth(arguments) > MAX_ARGUMENT_DEPTH:
        raise UsageError(f"{where}: 'arguments' nest more than {MAX_ARGUMENT_DEPTH} levels deep")
    if query:
        if arguments:
            raise UsageError(f"{where}: 'arguments' belong to tool charts; a SQL chart's values are :placeholders")
        sql.check_query(query, known, f"{where}: sql")
        columns = _columns(entry, chart_id, kind, where)
    else:
        sql.check_arguments(arguments, known, f"{where}: arguments")
        stray = [key for key in COLUMN_KEYS + ("unit",) if key in entry]
        if stray:
            raise UsageError(f"{where}: {', '.join(stray)} belong to SQL charts (a tool's answer names its own)")
        columns = ()
    counts = entry.get("counts", False)
    if not isinstance(counts, bool):
        raise UsageError(f"{where}: 'counts' must be true or false")
    compare = _text_field(entry, "compare", where)
    if compare not in tuple(Comparison):
        raise UsageError(f"{where}: compare {compare!r} is not one the runner knows (previous_year)")
    if compare and KINDS[kind].monthly is None:
        raise UsageError(f"{where}: a {kind} chart has no months to compare with the previous year")
    for key in ("title", "y_label", "unit", "request"):
        if isinstance(entry.get(key), str) and not _printable(entry[key].strip()):
            raise UsageError(f"{where}: {key!r} holds control characters ({entry[key][:40]!r})")
    return ChartSpec(
        id=chart_id,
        title=entry["title"].strip(),
        tool=tool,
        kind=kind,
        request=str(entry.get("request") or entry["title"]).strip(),
        y_label=str(entry.get("y_label", "")),
        counts=counts,
        arguments=tuple(sorted(arguments.items())),
        sql=query,
        columns=columns,
        unit=_text_field(entry, "unit", where)[:20],
        params=tuple(sorted(params.items())),
        compare=Comparison(compare),
    )


PACKS_DIR = Path(__file__).parent / "packs"
DEFAULT_PACK = "business-review"
BUILTIN_PACK_NAMES = (DEFAULT_PACK, "business-review-sql")


def load_pack(path: str | Path) -> Pack:
    """A built-in pack by name, or a user's pack file (TOML with [[chart]] tables, or JSON
    {"charts": [...]}); either may hold a table of `params` shared by its charts, and key
    figures ([[figure]] tables, or "figures": [...])."""
    if str(path) == DEFAULT_PACK:
        return Pack(BUILTIN_PACK, BUILTIN_FIGURES)
    if str(path) in BUILTIN_PACK_NAMES:
        path = PACKS_DIR / f"{path}.toml"
    path = Path(path)
    if not path.exists() and not path.suffix:
        raise UsageError(f"chart pack {path} does not exist (built-in packs: {', '.join(BUILTIN_PACK_NAMES)})")
    text = read_input_text(path, "chart pack", MAX_PACK_BYTES)
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            data = data if isinstance(data, dict) else {"charts": data}
            entries, figure_entries = data.get("charts"), data.get("figures", [])
        else:
            data = tomllib.loads(text)
            entries, figure_entries = data.get("chart"), data.get("figure", [])
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"chart pack {path} is malformed: {exc}") from None
    except RecursionError:
        raise UsageError(f"chart pack {path} nests too deeply to be a chart pack") from None
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"chart pack {path} lists no charts (expected [[chart]] tables or {{\"charts\": [...]}})")
    if len(entries) > MAX_PACK_CHARTS:
        raise UsageError(f"chart pack {path} has {len(entries):,} charts; a pack holds at most {MAX_PACK_CHARTS}")
    pack_params = sql.check_params(data.get("params", {}), f"chart pack {path}: params")
    merchants_sql = _merchants_query(data.get("merchants", ""), pack_params, f"chart pack {path}: merchants")
    specs = tuple(_spec_from_mapping(e, f"chart pack {path}, chart #{i}", pack_params)
                  for i, e in enumerate(entries, 1))
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            raise UsageError(f"chart pack {path}: chart id {spec.id!r} appears twice")
        seen.add(spec.id)
    if not isinstance(figure_entries, list):
        raise UsageError(f"chart pack {path}: figures must be a list of tables ([[figure]])")
    figures = tuple(figure_from_mapping(e, f"chart pack {path}, figure #{i}") for i, e in enumerate(figure_entries, 1))
    check_figures(figures, {spec.id: spec.kind for spec in specs}, f"chart pack {path}")
    return Pack(specs, figures, merchants_sql)


def _merchants_query(query: Any, params: dict[str, Param], where: str) -> str:
    """A SQL pack's query listing merchants (merchant_token, name), checked as a chart's query is,
    but for all merchants: no :merchant_token or dates, only the pack's params (inlined here)."""
    if not isinstance(query, str):
        raise UsageError(f"{where} must be a SQL query (text) selecting merchant_token and name")
    if len(query) > sql.MAX_QUERY_CHARS:
        raise UsageError(f"{where} is {len(query):,} characters long (at most {sql.MAX_QUERY_CHARS:,})")
    unknown = sorted(set(sql.placeholders(query)) - set(params))
    if unknown:
        raise UsageError(f"{where} uses :{unknown[0]}; it lists every merchant, so it may use only the pack's "
                         "params" + (f" ({', '.join(params)})" if params else " (it has none)"))
    return sql.inline(query, params).strip()


def select_charts(pack: tuple[ChartSpec, ...], ids: str | None) -> tuple[ChartSpec, ...]:
    """The subset named by a comma-separated id list, in the order given; all of them if none."""
    if not ids:
        return pack
    by_id = {spec.id: spec for spec in pack}
    wanted = [part.strip() for part in ids.split(",") if part.strip()]
    if not wanted:
        raise UsageError(f"--charts {ids!r} names no chart")
    unknown = [w for w in wanted if w not in by_id]
    if unknown:
        raise UsageError(f"--charts: unknown chart id {unknown[0]!r} (known: {', '.join(by_id)})")
    return tuple(by_id[w] for w in dict.fromkeys(wanted))

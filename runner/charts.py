"""Chart specs: the built-in business-review pack and loading a user's pack file."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import UsageError

# How each chart kind is drawn, and the JSON shape its data must have:
#   series:     {"labels": [...], "series": [{"name": str, "values": [num|null, ...]}], "unit": str}
#   categories: {"labels": [...], "values": [num, ...], "unit": str}
#   groups:     {"groups": [{"name": str, "labels": [...], "values": [num, ...]}], "unit": "%"}
KIND_SHAPES = {
    "yoy_lines": "series",  # one line per year over Jan..Dec
    "stacked_bars": "series",  # stacked bars per month, one segment per series
    "line": "series",  # one or more lines over time
    "bars": "categories",  # one bar per category with its value
    "share_bars": "categories",  # counts per category, labelled with their share
    "breakdown": "groups",  # 100% bars, one per group, labelled in percent
}

_CHART_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True)
class ChartSpec:
    id: str
    title: str
    tool: str
    kind: str
    request: str  # what agent mode asks the model for, in plain words
    y_label: str = ""
    counts: bool = False  # values are counts: negative ones are bad data
    arguments: tuple[tuple[str, Any], ...] = ()  # extra tool arguments beyond merchant and dates

    @property
    def shape(self) -> str:
        return KIND_SHAPES[self.kind]


BUILTIN_PACK: tuple[ChartSpec, ...] = (
    ChartSpec(
        id="monthly_sales_yoy",
        title="Monthly sales, year over year",
        tool="get_monthly_sales_yoy",
        kind="yoy_lines",
        request="monthly sales year over year: total order amount per calendar month, one series per year",
        y_label="Sales (EUR)",
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


def _spec_from_mapping(entry: Any, where: str) -> ChartSpec:
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: expected a table of chart fields, got {type(entry).__name__}")
    allowed = {"id", "title", "tool", "kind", "request", "y_label", "counts", "arguments"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise UsageError(f"{where}: unknown field(s) {', '.join(unknown)}")
    for key in ("id", "title", "tool", "kind"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise UsageError(f"{where}: field {key!r} is required and must be text")
    chart_id, kind, tool = entry["id"].strip(), entry["kind"].strip(), entry["tool"].strip()
    if not _CHART_ID.match(chart_id):
        raise UsageError(f"{where}: chart id {chart_id!r} must be 1-64 of a-z, 0-9, '_' or '-'")
    if kind not in KIND_SHAPES:
        raise UsageError(f"{where}: chart {chart_id!r} has unknown kind {kind!r} "
                         f"(one of {', '.join(KIND_SHAPES)})")
    if not _TOOL_NAME.match(tool):
        raise UsageError(f"{where}: chart {chart_id!r} has an invalid tool name {tool!r}")
    arguments = entry.get("arguments", {})
    if not isinstance(arguments, dict):
        raise UsageError(f"{where}: chart {chart_id!r}: 'arguments' must be a table")
    reserved = {"merchant_token", "start_date", "end_date"} & set(arguments)
    if reserved:
        raise UsageError(f"{where}: chart {chart_id!r}: arguments may not set {', '.join(sorted(reserved))}")
    counts = entry.get("counts", False)
    if not isinstance(counts, bool):
        raise UsageError(f"{where}: chart {chart_id!r}: 'counts' must be true or false")
    return ChartSpec(
        id=chart_id,
        title=entry["title"].strip(),
        tool=tool,
        kind=kind,
        request=str(entry.get("request") or entry["title"]).strip(),
        y_label=str(entry.get("y_label", "")),
        counts=counts,
        arguments=tuple(sorted(arguments.items())),
    )


def load_pack(path: str | Path) -> tuple[ChartSpec, ...]:
    """Read a user's chart pack (TOML with [[chart]] tables, or JSON {"charts": [...]})."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"chart pack {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"chart pack {path} cannot be read: {exc}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            entries = data.get("charts") if isinstance(data, dict) else data
        else:
            entries = tomllib.loads(text).get("chart")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"chart pack {path} is malformed: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"chart pack {path} lists no charts (expected [[chart]] tables or {{\"charts\": [...]}})")
    specs = tuple(_spec_from_mapping(e, f"chart pack {path}, chart #{i}") for i, e in enumerate(entries, 1))
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            raise UsageError(f"chart pack {path}: chart id {spec.id!r} appears twice")
        seen.add(spec.id)
    return specs


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

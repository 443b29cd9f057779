"""SQL result rows into a chart's JSON shape, using the columns the chart's spec names.

Rows come as objects, as {columns, rows}, or as bare tuples (read in the order of
POSITIONAL). Column names match without regard to case (Snowflake upper-cases them).
Numbers may arrive as text ("24402.16", how decimals travel); months as "YYYY-MM", as dates
or as timestamps. Missing months are filled as the chart kind requires: 0 where a bar or a
year-over-year line has no orders, a gap where a line's value (an average) is undefined.
The result then goes through the same validation as any tool's answer.
"""

from __future__ import annotations

import re
from typing import Any, assert_never

from runner.charts import ChartSpec
from runner.errors import ChartError, ErrorType, detail, one_line
from runner.kinds.base import Shape
from runner.records import ChartJob
from runner.retrieval.parse import bad_data, label_text, number, show
from runner.wording import MONTH_NAMES, months_between, year_month

MAX_ROWS = 100_000
# The order of a bare tuple row's cells, per shape: the roles of kinds.base.SHAPE_COLUMNS (which says
# which are required), in the order a row reads naturally; not derived from it, as that order is this contract's.
POSITIONAL = {Shape.SERIES: ("x", "series", "value"), Shape.CATEGORIES: ("label", "value"),
              Shape.GROUPS: ("group", "label", "value")}
_MONTH_OR_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}(?:-[0-9]{2}(?:[ T].*)?)?$")
_NUMBER = re.compile(r"^\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*$")
_ROW_LISTS = ("rows", "data", "results", "records")


def _column_names(spec: ChartSpec, names: Any) -> list[str]:
    if names is None:
        return [column for role in POSITIONAL[spec.shape] if (column := spec.column(role))]
    if not isinstance(names, list):
        raise bad_data(spec.id, f"'columns' must be a list, got {type(names).__name__}")
    return [str(n.get("name") if isinstance(n, dict) else n) for n in names]


def rows_of(spec: ChartSpec, payload: Any) -> list[dict[str, Any]]:
    """The result's rows as {lower-case column: value}."""
    names = None
    if isinstance(payload, dict):
        if payload.get("success") is False or ("error" in payload and not any(k in payload for k in _ROW_LISTS)):
            said = detail(str(payload.get("error") or payload.get("message") or payload))
            raise ChartError(ErrorType.TOOL_ERROR, f"{spec.id}: the query failed: {said}")
        if payload.get("truncated"):
            why = one_line(str(payload.get("warning") or "no reason given"), 200)
            raise bad_data(spec.id, f"the server cut the result short ({why}); aggregate more in the SQL")
        key = next((k for k in _ROW_LISTS if isinstance(payload.get(k), list)), None)
        if key is None:
            raise bad_data(spec.id, "expected rows (a list of row objects, or {columns, rows}), got an object with "
                                    "keys " + ", ".join(map(str, list(payload)[:8])))
        names, payload = payload.get("columns"), payload[key]
    if not isinstance(payload, list):
        raise bad_data(spec.id, "expected rows (a list of row objects, or {columns, rows}), "
                                f"got {type(payload).__name__}")
    if len(payload) > MAX_ROWS:
        raise bad_data(spec.id, f"the query returned {len(payload):,} rows, more than the {MAX_ROWS:,} a chart can use")
    rows = []
    for i, row in enumerate(payload):
        if isinstance(row, dict):
            rows.append({str(k).lower(): v for k, v in row.items()})
        elif isinstance(row, list):
            columns = _column_names(spec, names)
            if len(row) != len(columns):
                raise bad_data(spec.id, f"row {i} has {len(row)} values for {len(columns)} columns "
                                        f"({', '.join(columns)})")
            rows.append({c.lower(): v for c, v in zip(columns, row, strict=True)})
        else:
            raise bad_data(spec.id, f"row {i} is a {type(row).__name__}, not a row object or list")
    return rows


def _cell(spec: ChartSpec, row: dict[str, Any], role: str) -> Any:
    column = spec.column(role) or ""
    if column.lower() not in row:
        raise bad_data(spec.id, f"the result has no column {column!r} (its {role}); it has: "
                                f"{', '.join(show(name, 30) for name in list(row)[:20]) or 'none'}")
    return row[column.lower()]


def _label(spec: ChartSpec, row: dict[str, Any], role: str, index: int) -> str:
    """A label cell as it will be drawn, so that labels which would read the same clash here."""
    return label_text(spec, _cell(spec, row, role), f"row {index}: column {spec.column(role)!r}")


def _number(spec: ChartSpec, row: dict[str, Any], index: int) -> float | None:
    value = _cell(spec, row, "value")
    what = f"row {index}: column {spec.column('value')!r}"
    if value is None:
        return None
    if isinstance(value, str):
        if not _NUMBER.match(value):
            raise bad_data(spec.id, f"{what} holds {show(value)}, not a number")
        return number(spec, float(value), f"{what} ({show(value)})")  # "1e999" is inf: refused by name
    return number(spec, value, what)


def _month(spec: ChartSpec, x: str, index: int) -> str | None:
    """A month ("YYYY-MM") from a month, a date or a timestamp; None for a label that is none of
    them; bad data for one that looks like a date but cannot be (2024-13-01, 0000-00)."""
    if not _MONTH_OR_DATE.match(x):
        return None
    if year_month(x[:7]) is None:
        raise bad_data(spec.id, f"row {index}: column {spec.column('x')!r} holds {show(x)}, whose month is not 01-12")
    return x[:7]


def _unique(spec: ChartSpec, seen: set[Any] | dict[Any, Any], key: Any, index: int) -> None:
    if key in seen:
        shown = ", ".join(map(show, key)) if isinstance(key, tuple) else show(key)
        raise bad_data(spec.id, f"row {index} repeats ({shown}): each must come once (GROUP BY it in the SQL)")
    if isinstance(seen, set):
        seen.add(key)


def _series(spec: ChartSpec, job: ChartJob, rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_series = spec.column("series") is not None
    cells: dict[tuple[str, str], Any] = {}
    xs: dict[str, int] = {}  # each x and the first row that has it
    names: dict[str, None] = {}
    for i, row in enumerate(rows):
        x = _label(spec, row, "x", i)
        name = _label(spec, row, "series", i) if by_series else str(spec.column("value"))
        _unique(spec, cells, (x, name), i)
        cells[(x, name)] = _number(spec, row, i)
        xs.setdefault(x, i)
        names.setdefault(name)
    months = {x: _month(spec, x, i) for x, i in xs.items()}
    monthly = all(months.values())
    if monthly:  # several spellings of one month ("2024-01", "2024-01-01") are one month
        merged: dict[tuple[str, str], Any] = {}
        for (x, name), value in cells.items():
            _unique(spec, merged, (months[x], name), xs[x])
            merged[(str(months[x]), name)] = value
        cells = merged
    window = months_between(job.retrieve_start, job.end_date)
    if spec.chart_kind.by_year:
        if not monthly:
            raise bad_data(spec.id, f"column {spec.column('x')!r} must hold months (YYYY-MM) or dates for a "
                                    "year-over-year chart")
        in_window = set(window)
        years = range(int(job.retrieve_start[:4]), int(job.end_date[:4]) + 1)
        series = [{"name": str(year), "values": [
            (cells.get((key, str(spec.column("value"))), 0.0) if key in in_window else None)
            for key in (f"{year:04d}-{m:02d}" for m in range(1, 13))]} for year in years]
        return {"labels": list(MONTH_NAMES), "series": series if cells else []}
    labels = window if monthly else list(xs)
    fill = spec.chart_kind.fill
    series = [{"name": name, "values": [cells.get((x, name), fill) for x in labels]} for name in names]
    return {"labels": labels, "series": series}


def chart_payload(spec: ChartSpec, job: ChartJob, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The chart's JSON (as a chart tool would send it) built from the query's rows."""
    body: dict[str, Any]
    shape = spec.shape
    if shape is Shape.SERIES:
        body = _series(spec, job, rows)
    elif shape is Shape.CATEGORIES:
        seen: set[Any] = set()
        labels = [_label(spec, row, "label", i) for i, row in enumerate(rows)]
        for i, label in enumerate(labels):
            _unique(spec, seen, label, i)
        body = {"labels": labels, "values": [_number(spec, r, i) for i, r in enumerate(rows)]}
    elif shape is Shape.GROUPS:
        groups: dict[str, dict[str, list[Any]]] = {}
        pairs: set[Any] = set()
        for i, row in enumerate(rows):
            name, label = _label(spec, row, "group", i), _label(spec, row, "label", i)
            _unique(spec, pairs, (name, label), i)
            group = groups.setdefault(name, {"labels": [], "values": []})
            group["labels"].append(label)
            group["values"].append(_number(spec, row, i))
        body = {"groups": [{"name": name, **group} for name, group in groups.items()]}
    else:
        assert_never(shape)
    return {**body, "unit": spec.unit}

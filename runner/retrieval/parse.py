"""Validate a chart's JSON into ChartData, or a ChartError saying what is wrong; and back.

The same checks serve tool results, SQL rows pivoted into a chart, and an agent's JSON
answers. Limits keep a runaway result from costing unbounded memory or time downstream.
"""

from __future__ import annotations

import json
import math
from typing import Any

from runner.charts import ChartSpec
from runner.errors import ChartError, ErrorType
from runner.jobs import ChartData, ChartJob, Panel, Series

MAX_LABELS = 1000
MAX_SERIES = 50
MAX_GROUPS = 12
MAX_TEXT = 80
PERCENT_TOLERANCE = 1.5  # shares rounded to one decimal may miss 100 by a little


def _bad(spec: ChartSpec, why: str) -> ChartError:
    return ChartError(ErrorType.BAD_DATA, f"{spec.id}: {why}")


def _text(spec: ChartSpec, value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _bad(spec, f"{what} must be text, got {type(value).__name__}")
    text = "".join(ch for ch in str(value) if ch.isprintable()).strip()
    return text[:MAX_TEXT]


def _number(spec: ChartSpec, value: Any, what: str, allow_null: bool) -> float | None:
    if value is None and allow_null:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(spec, f"{what} must be a number, got {json.dumps(value)[:40] if _jsonable(value) else value!r}")
    if not math.isfinite(value):
        raise _bad(spec, f"{what} is {value}, not a finite number")
    if spec.counts and value < 0:
        raise _bad(spec, f"{what} is a negative count ({value:g})")
    return float(value)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _list(spec: ChartSpec, value: Any, what: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(spec, f"{what} must be a list, got {type(value).__name__}")
    if len(value) > limit:
        raise _bad(spec, f"{what} has {len(value):,} entries, more than the {limit:,} a chart can show")
    return value


def _values(spec: ChartSpec, raw: Any, n: int, what: str, allow_null: bool) -> tuple[float | None, ...]:
    values = _list(spec, raw, what, MAX_LABELS)
    if len(values) != n:
        raise _bad(spec, f"{what} has {len(values)} values for {n} labels")
    return tuple(_number(spec, v, f"{what}[{i}]", allow_null) for i, v in enumerate(values))


def _labels(spec: ChartSpec, raw: Any, what: str) -> tuple[str, ...]:
    return tuple(_text(spec, v, f"{what}[{i}]") for i, v in enumerate(_list(spec, raw, what, MAX_LABELS)))


def _all_zero(panels: tuple[Panel, ...]) -> bool:
    return all(not v for p in panels for s in p.series for v in s.values)


def chart_data_from_json(spec: ChartSpec, merchant: str, payload: Any, paragraph: str | None = None) -> ChartData:
    """Validate one chart's JSON against its spec's shape."""
    if not isinstance(payload, dict):
        raise _bad(spec, f"expected a JSON object, got {type(payload).__name__}")
    unit = _text(spec, payload.get("unit") or "", "unit")[:20]
    shape = spec.shape
    panels: tuple[Panel, ...]
    if shape == "series":
        labels = _labels(spec, payload.get("labels"), "labels")
        raw_series = _list(spec, payload.get("series"), "series", MAX_SERIES)
        series = []
        for i, entry in enumerate(raw_series):
            if not isinstance(entry, dict):
                raise _bad(spec, f"series[{i}] must be an object with name and values")
            name = _text(spec, entry.get("name", f"series {i + 1}"), f"series[{i}].name")
            series.append(Series(name, _values(spec, entry.get("values"), len(labels), f"series[{i}].values", True)))
        panels = (Panel("", labels, tuple(series)),)
        empty = not labels or not series
    elif shape == "categories":
        labels = _labels(spec, payload.get("labels"), "labels")
        values = _values(spec, payload.get("values"), len(labels), "values", False)
        panels = (Panel("", labels, (Series(spec.y_label or "value", values),)),)
        empty = not labels
    elif shape == "groups":
        groups = _list(spec, payload.get("groups"), "groups", MAX_GROUPS)
        built = []
        for i, group in enumerate(groups):
            if not isinstance(group, dict):
                raise _bad(spec, f"groups[{i}] must be an object with name, labels and values")
            name = _text(spec, group.get("name", f"group {i + 1}"), f"groups[{i}].name")
            labels = _labels(spec, group.get("labels"), f"groups[{i}].labels")
            values = _values(spec, group.get("values"), len(labels), f"groups[{i}].values", False)
            if any(v is not None and (v < 0 or v > 100 + PERCENT_TOLERANCE) for v in values):
                raise _bad(spec, f"groups[{i}] ({name}) has a share outside 0-100%")
            total = sum(v or 0 for v in values)
            if labels and abs(total - 100) > PERCENT_TOLERANCE:
                raise _bad(spec, f"shares of {name!r} add up to {total:.1f}%, not 100%")
            built.append(Panel(name, labels, (Series(name, values),)))
        panels = tuple(built)
        empty = not panels or not any(p.labels for p in panels)
    else:  # pragma: no cover - KIND_SHAPES and this function change together
        raise ValueError(f"unknown shape {shape}")
    if empty or _all_zero(panels):
        raise ChartError(ErrorType.EMPTY_DATA, f"{spec.id}: no data for merchant {merchant!r} in the requested window")
    return ChartData(unit=unit, panels=panels, paragraph=paragraph)


def chart_json(spec: ChartSpec, data: ChartData) -> dict[str, Any]:
    """ChartData in its kind's JSON shape: what chart_data_from_json reads, and what the data
    file beside each PNG holds."""
    panels = data.panels
    body: dict[str, Any]
    if spec.shape == "series":
        body = {"labels": list(panels[0].labels),
                "series": [{"name": s.name, "values": list(s.values)} for s in panels[0].series]}
    elif spec.shape == "categories":
        body = {"labels": list(panels[0].labels), "values": list(panels[0].series[0].values)}
    else:
        body = {"groups": [{"name": p.title, "labels": list(p.labels), "values": list(p.series[0].values)}
                           for p in panels]}
    return {**body, "unit": data.unit}


def data_document(job: ChartJob, data: ChartData) -> bytes:
    """The data file beside a chart's PNG: what was drawn, for audits and spreadsheets."""
    document = {"merchant": job.merchant, "chart_id": job.spec.id, "title": job.spec.title, "kind": job.spec.kind,
                "start_date": job.start_date, "end_date": job.end_date, **chart_json(job.spec, data)}
    if data.paragraph is not None:
        document["paragraph"] = data.paragraph
    return json.dumps(document, indent=1, allow_nan=False).encode()

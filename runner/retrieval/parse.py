"""Validate a chart's JSON into ChartData, or a ChartError saying what is wrong; and back.

The same checks serve tool results, SQL rows pivoted into a chart, and an agent's JSON
answers. Limits keep a runaway result from costing unbounded memory or time downstream.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, assert_never

from runner.charts import ChartSpec
from runner.errors import ChartError, ErrorType
from runner.kinds.base import Shape
from runner.kinds.window import no_data, require_values
from runner.records import ChartData, ChartJob, Panel, Series

MAX_LABELS = 1000
MAX_SERIES = 50
MAX_GROUPS = 12
MAX_TEXT = 80
PERCENT_TOLERANCE = 1.5  # shares rounded to one decimal may miss 100 by a little
# The largest magnitude a chart's number may have: past it no axis, sum or share means anything,
# and every integer up to it is exact as a float.
MAX_VALUE = 1e15
_LIMIT = f"{MAX_VALUE:.0e}".replace("+", "")  # "1e15"
MAX_SHOWN_DIGITS = 4000  # str() of a longer integer raises (Python's int/str conversion limit)
_NOT_FINITE = re.compile(r"^[-+]?(?:nan|inf|infinity)$", re.IGNORECASE)
_NEGATIVE_ZERO = re.compile(r"^-0+(?:\.0*)?$")
# What a reader takes for a month: wider than runner.wording's "YYYY-MM" (any script's digits), so
# that "２０２４-１３" is refused too rather than drawn as a label.
_MONTH_LABEL = re.compile(r"^(\d{4})-(\d{2})$")


def bad_data(what: str, why: str) -> ChartError:
    """The answer for `what` (a chart's id) is not data a chart can use, and says why."""
    return ChartError(ErrorType.BAD_DATA, f"{what}: {why}")


def show(value: Any, limit: int = 40) -> str:
    """A short picture of a value from a tool, for an error line: bounded, and it never raises
    (not on a 400-digit integer, not on a list nested a million deep)."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        digits = len(str(abs(value))) if value.bit_length() < MAX_SHOWN_DIGITS * 3 else 0
        if not digits:
            return f"an integer of about {int(value.bit_length() * math.log10(2)):,} digits"
        if digits > 20:
            return f"{'-' if value < 0 else ''}{str(abs(value))[:12]}… (an integer of {digits:,} digits)"
        return str(value)
    if isinstance(value, float | str):
        text = repr(value)
    elif isinstance(value, list | tuple):
        return f"a list of {len(value):,} items"
    elif isinstance(value, dict):
        return f"an object of {len(value):,} keys"
    else:
        text = type(value).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def label_text(spec: ChartSpec, value: Any, what: str) -> str:
    """A label or a name as drawn: printable, stripped, at most MAX_TEXT characters."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise bad_data(spec.id, f"{what} must be text, got {type(value).__name__}")
    too_long = isinstance(value, int) and abs(value) > 10 ** MAX_TEXT  # and str() of a huge one raises
    if too_long or (isinstance(value, float) and not math.isfinite(value)):
        raise bad_data(spec.id, f"{what} is {show(value)}, not a label")
    if isinstance(value, float):
        value += 0.0  # -0.0 reads as 0.0
    text = "".join(ch for ch in str(value) if ch.isprintable()).strip()
    # Text rows carry every value as text: a NaN or an infinity that became text is no label, and a
    # negative zero reads as zero, as it does when it comes as a number.
    if _NOT_FINITE.match(text):
        raise bad_data(spec.id, f"{what} is {show(text)}, not a label")
    if _NEGATIVE_ZERO.match(text):
        text = text[1:]
    return text[:MAX_TEXT].rstrip()  # read again, it stays the same


def number(spec: ChartSpec, value: Any, what: str) -> float:
    """A value a chart can draw, add up and write: a finite number within ±MAX_VALUE; -0 is 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_data(spec.id, f"{what} must be a number, got {show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise bad_data(spec.id, f"{what} is {show(value)}, not a finite number")
    if abs(value) > MAX_VALUE:  # int against float compares exactly: no conversion, no overflow
        raise bad_data(spec.id, f"{what} is {show(value)}, beyond the ±{_LIMIT} a chart can show")
    if value < 0 and (spec.counts or spec.chart_kind.parts_of_a_whole):
        raise bad_data(spec.id, f"{what} is negative ({show(value)}), "
                                f"but a {'count' if spec.counts else 'share of a total'}")
    return float(value) + 0.0


def _list(spec: ChartSpec, value: Any, what: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise bad_data(spec.id, f"{what} must be a list, got {type(value).__name__}")
    if len(value) > limit:
        raise bad_data(spec.id, f"{what} has {len(value):,} entries, more than the {limit:,} a chart can show")
    return value


def _values(spec: ChartSpec, raw: Any, labels: tuple[str, ...], what: str, allow_null: bool,
            ) -> tuple[float | None, ...]:
    values = _list(spec, raw, what, MAX_LABELS)
    if len(values) != len(labels):
        raise bad_data(spec.id, f"{what} has {len(values)} values for {len(labels)} labels")
    return tuple(None if v is None and allow_null else number(spec, v, f"{what}[{i}] (at {show(labels[i], 30)})")
                 for i, v in enumerate(values))


def _distinct(spec: ChartSpec, texts: tuple[str, ...], raw: list[Any], what: str) -> tuple[str, ...]:
    """Labels (or names) that a reader can tell apart: each once, after cleaning and cutting.
    `what` names one of them: "labels[{}]"."""
    first: dict[str, int] = {}
    for i, text in enumerate(texts):
        j = first.setdefault(text, i)
        if j != i:
            cut = f" once cleaned and cut to {MAX_TEXT} characters" if raw[i] != raw[j] else ""
            raise bad_data(spec.id, f"{what.format(j)} and {what.format(i)} both read {show(text)}{cut}: "
                                    "each must differ")
    return texts


def _labels(spec: ChartSpec, raw: Any, what: str) -> tuple[str, ...]:
    """Labels as drawn, each once; one that reads as a month (YYYY-MM) must be one, since the
    paragraph and the axis name it."""
    items = _list(spec, raw, what, MAX_LABELS)
    texts = tuple(label_text(spec, v, f"{what}[{i}]") for i, v in enumerate(items))
    for i, label in enumerate(texts):
        match = _MONTH_LABEL.match(label)
        if match and not 1 <= int(match[2]) <= 12:
            raise bad_data(spec.id, f"{what}[{i}] is {show(label)}, not a month (01-12)")
    return _distinct(spec, texts, items, what + "[{}]")


def chart_data_from_json(spec: ChartSpec, merchant: str, payload: Any, paragraph: str | None = None) -> ChartData:
    """Validate one chart's JSON against its spec's shape."""
    if not isinstance(payload, dict):
        raise bad_data(spec.id, f"expected a JSON object, got {type(payload).__name__}")
    unit = label_text(spec, payload.get("unit") or "", "unit")[:20].rstrip()
    shape = spec.shape
    panels: tuple[Panel, ...]
    if shape is Shape.SERIES:
        labels = _labels(spec, payload.get("labels"), "labels")
        raw_series = _list(spec, payload.get("series"), "series", MAX_SERIES)
        names, series = [], []
        for i, entry in enumerate(raw_series):
            if not isinstance(entry, dict):
                raise bad_data(spec.id, f"series[{i}] must be an object with name and values")
            names.append(label_text(spec, entry.get("name", f"series {i + 1}"), f"series[{i}].name"))
            values = _values(spec, entry.get("values"), labels, f"series[{i}].values", True)
            series.append(Series(names[-1], values))
        _distinct(spec, tuple(names), [e.get("name") for e in raw_series], "series[{}].name")
        panels = (Panel("", labels, tuple(series)),)
        empty = not labels or not series
    elif shape is Shape.CATEGORIES:
        labels = _labels(spec, payload.get("labels"), "labels")
        values = _values(spec, payload.get("values"), labels, "values", False)
        panels = (Panel("", labels, (Series(spec.y_label or "value", values),)),)
        empty = not labels
    elif shape is Shape.GROUPS:
        groups = _list(spec, payload.get("groups"), "groups", MAX_GROUPS)
        built = []
        for i, group in enumerate(groups):
            if not isinstance(group, dict):
                raise bad_data(spec.id, f"groups[{i}] must be an object with name, labels and values")
            name = label_text(spec, group.get("name", f"group {i + 1}"), f"groups[{i}].name")
            labels = _labels(spec, group.get("labels"), f"groups[{i}].labels")
            shares = _values(spec, group.get("values"), labels, f"groups[{i}].values", False)
            if any(v is not None and (v < 0 or v > 100 + PERCENT_TOLERANCE) for v in shares):
                raise bad_data(spec.id, f"groups[{i}] ({show(name)}) has a share outside 0-100%")
            total = sum(v or 0 for v in shares)
            if labels and abs(total - 100) > PERCENT_TOLERANCE:
                raise bad_data(spec.id, f"shares of {show(name)} add up to {total:.1f}%, not 100%")
            built.append(Panel(name, labels, (Series(name, shares),)))
        _distinct(spec, tuple(p.title for p in built), [g.get("name") for g in groups], "groups[{}].name")
        panels = tuple(built)
        empty = not panels or not any(p.labels for p in panels)
    else:  # a Shape member with no branch here: mypy says so too
        assert_never(shape)
    if empty:
        raise no_data(spec, merchant)
    return require_values(spec, merchant, ChartData(unit=unit, panels=panels, paragraph=paragraph))


def chart_json(spec: ChartSpec, data: ChartData) -> dict[str, Any]:
    """ChartData in its kind's JSON shape: what chart_data_from_json reads, and what the data
    file beside each PNG holds."""
    panels = data.panels
    shape = spec.shape
    body: dict[str, Any]
    if shape is Shape.SERIES:
        body = {"labels": list(panels[0].labels),
                "series": [{"name": s.name, "values": list(s.values)} for s in panels[0].series]}
    elif shape is Shape.CATEGORIES:
        body = {"labels": list(panels[0].labels), "values": list(panels[0].series[0].values)}
    elif shape is Shape.GROUPS:
        body = {"groups": [{"name": p.title, "labels": list(p.labels), "values": list(p.series[0].values)}
                           for p in panels]}
    else:
        assert_never(shape)
    return {**body, "unit": data.unit}


def data_document(job: ChartJob, data: ChartData) -> bytes:
    """The data file beside a chart's PNG, for audits and spreadsheets: the data as retrieved, with
    the window shown (start_date to end_date) and the one retrieved (from retrieved_start_date)."""
    document = {"merchant": job.merchant, "chart_id": job.spec.id, "title": job.spec.title, "kind": job.spec.kind,
                "start_date": job.start_date, "end_date": job.end_date, "retrieved_start_date": job.retrieve_start,
                **chart_json(job.spec, data)}
    if data.paragraph is not None:
        document["paragraph"] = data.paragraph
    return json.dumps(document, indent=1, allow_nan=False).encode()

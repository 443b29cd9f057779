"""The paragraph under each chart, written from its data: deterministic, one rule per kind.

Each says what a merchant would want to know and carries the numbers: growth and the best
and worst month, how a mix moved, a trend, the largest groups, the shares, the gap between
categories. Flat data is called flat; nothing is said that the numbers do not show. A
`headline` per chart feeds the deck's summary slide.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from runner.charts import ChartSpec
from runner.jobs import ChartData, Panel

MAX_CHARS = 500  # what four lines under a chart hold
STEADY_POINTS = 1.0  # a share moving less than this many points has held steady
STEADY_CHANGE = 0.02  # a value changing less than 2% has held steady
_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")


@dataclass(frozen=True)
class Text:
    headline: str  # one line for the summary slide
    paragraph: str


def unsigned_zero(number: str) -> str:
    """A formatted number that rounds to zero, written without its sign: "0.00", not "-0.00"."""
    return number if any(ch in "123456789" for ch in number) else number.replace("-", "")


def money(value: float, unit: str) -> str:
    """A value in the chart's unit, as a reader writes it: €12,345, €186.40, 1,234 orders, 55.9%."""
    if unit == "%":
        return _pct(value)
    if unit.upper() in ("EUR", "€"):
        return "€" + unsigned_zero(f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}")
    number = f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.2f}"
    return f"{unsigned_zero(number)} {unit}".strip()


def _pct(value: float) -> str:
    return unsigned_zero(f"{value:.1f}") + "%"


def _share(part: float, whole: float) -> float:
    """`part` in percent of `whole`; 0 of nothing. Validated parts of a whole are 0..whole."""
    return 100 * part / whole if whole else 0.0


def _growth(new: float, old: float) -> float | None:
    """The change from `old` to `new` in percent; None where there is nothing to measure it by
    (no `old`, or one so near zero that the ratio leaves the floats)."""
    growth = (new - old) / abs(old) * 100 if old else math.inf
    return growth if math.isfinite(growth) else None


def _change(new: float, old: float) -> str:
    growth = _growth(new, old)
    return "new" if growth is None else unsigned_zero(f"{growth:+.1f}") + "%"


def month_name(label: str) -> str:
    match = _MONTH.match(label)
    if match is None or not 1 <= int(match[2]) <= 12:
        return label
    return f"{calendar.month_abbr[int(match[2])]} {match[1]}"


def _points(panel: Panel, series: int = 0) -> list[tuple[str, float]]:
    return [(label, value) for label, value in zip(panel.labels, panel.series[series].values, strict=True)
            if value is not None]


def _yoy(spec: ChartSpec, data: ChartData) -> Text:
    panel, unit = data.panels[0], data.unit
    years = [s for s in panel.series if any(v is not None for v in s.values)]
    points = [(f"{label} {s.name}", v) for s in years for label, v in zip(panel.labels, s.values, strict=True)
              if v is not None]
    best, worst = max(points, key=lambda p: p[1]), min(points, key=lambda p: p[1])
    extremes = f"The best month was {best[0]} ({money(best[1], unit)}) and the weakest {worst[0]} " \
               f"({money(worst[1], unit)})."
    last = years[-1]
    common = [i for i, (a, b) in enumerate(zip(last.values, years[-2].values, strict=True))
              if a is not None and b is not None] if len(years) > 1 else []
    if not common:  # one year, or two with no month in common: nothing to compare like with like
        total = sum(v for v in last.values if v is not None)
        alone = "the only year in the period" if len(years) < 2 else f"no month of it also in {years[-2].name}"
        return Text(f"{spec.title}: {money(total, unit)} in {last.name}",
                    f"{money(total, unit)} over {last.name}, {alone}. {extremes}")
    previous = years[-2]
    now, before = (sum(s.values[i] or 0.0 for i in common) for s in (last, previous))
    span = f"{panel.labels[common[0]]}–{panel.labels[common[-1]]}" if len(common) > 1 else panel.labels[common[0]]
    growth = _growth(now, before)
    if growth is None:
        trend = f"against {money(before, unit)} in the same months of {previous.name}"
    elif abs(growth) < STEADY_CHANGE * 100:
        trend = f"level with {previous.name} ({money(before, unit)})"
    else:
        trend = f"{'up' if growth > 0 else 'down'} {_pct(abs(growth))} " \
                f"on the same months of {previous.name} ({money(before, unit)})"
    return Text(f"{spec.title}: {money(now, unit)} in {span} {last.name}, {_change(now, before)}",
                f"{span} {last.name} came to {money(now, unit)}, {trend}. {extremes}")


def _shares(panel: Panel, months: slice) -> dict[str, float]:
    totals = {s.name: sum(v or 0.0 for v in s.values[months]) for s in panel.series}
    whole = sum(totals.values())
    return {name: _share(value, whole) for name, value in totals.items()}


def _mix(spec: ChartSpec, data: ChartData) -> Text:
    panel, unit = data.panels[0], data.unit
    total = sum(v or 0.0 for s in panel.series for v in s.values)
    overall = sorted(_shares(panel, slice(None)).items(), key=lambda item: -item[1])
    listed = ", ".join(f"{name} {_pct(share)}" for name, share in overall)
    text = f"Of {money(total, unit)} over the period: {listed}."
    with_data = [i for i in range(len(panel.labels)) if any(s.values[i] for s in panel.series)]
    if len(panel.series) > 1 and len(with_data) >= 6:
        window = max(1, min(3, len(with_data) // 4))
        first = _shares(panel, slice(with_data[0], with_data[window - 1] + 1))
        last = _shares(panel, slice(with_data[-window], with_data[-1] + 1))
        # Compared as printed (one decimal of a point): with two categories both move by the same
        # amount, and float noise (SQLite's 3771.5199999 vs 3771.52) must not pick which is named;
        # a tie names the larger category.
        weight = {n: round(share, 1) for n, share in overall}
        name = max(first, key=lambda n: (round(abs(last[n] - first[n]), 1), weight.get(n, 0.0)))
        span = f"the first {window} months and the last {window}" if window > 1 else "the first month and the last"
        if abs(last[name] - first[name]) < STEADY_POINTS:
            text += f" The mix held steady: no share moved a point between {span}."
        else:
            verb = "rose" if last[name] > first[name] else "fell"
            text += f" The largest shift: {name} {verb} from {_pct(first[name])} to {_pct(last[name])} between {span}."
    return Text(f"{spec.title}: {overall[0][0]} leads with {_pct(overall[0][1])}", text)


def _trend(spec: ChartSpec, data: ChartData) -> Text:
    panel, unit = data.panels[0], data.unit
    shown = next(i for i, s in enumerate(panel.series) if any(v is not None for v in s.values))
    points = _points(panel, shown)
    (first_label, first), (last_label, last) = points[0], points[-1]
    high, low = max(points, key=lambda p: p[1]), min(points, key=lambda p: p[1])
    mean = sum(v for _, v in points) / len(points)
    growth = _growth(last, first)
    if growth is not None and abs(growth) < STEADY_CHANGE * 100:
        text = f"{panel.series[shown].name} held steady around {money(mean, unit)}: {money(first, unit)} in " \
               f"{month_name(first_label)} and {money(last, unit)} in {month_name(last_label)}."
    else:
        text = f"{panel.series[shown].name} was {money(last, unit)} in {month_name(last_label)}, against " \
               f"{money(first, unit)} in {month_name(first_label)} ({_change(last, first)})."
    if len(points) > 2:
        text += f" It peaked at {money(high[1], unit)} in {month_name(high[0])} and was lowest in " \
                f"{month_name(low[0])} ({money(low[1], unit)}); the average was {money(mean, unit)}."
    return Text(f"{spec.title}: {money(last, unit)} in {month_name(last_label)}, {_change(last, first)}", text)


def _groups(spec: ChartSpec, data: ChartData) -> Text:
    parts = []
    for panel in data.panels:
        points = _points(panel)
        if points:
            label, share = max(points, key=lambda p: p[1])
            parts.append(f"{label} by {panel.title.lower()} ({_pct(share)})")
    text = "The largest groups: " + "; ".join(parts) + "."
    return Text(f"{spec.title}: " + ", ".join(p.split(" by ")[0] for p in parts), text)


def _categories(spec: ChartSpec, data: ChartData) -> Text:
    points = sorted(_points(data.panels[0]), key=lambda p: -p[1])
    unit = data.unit
    if spec.kind == "share_bars":
        total = sum(v for _, v in points)
        listed = " and ".join(f"{label} {_pct(_share(v, total))} ({money(v, unit)})" for label, v in points) \
            if len(points) <= 3 else ", ".join(f"{label} {_pct(_share(v, total))}" for label, v in points)
        return Text(f"{spec.title}: {points[0][0]} {_pct(_share(points[0][1], total))}",
                    f"Of {money(total, unit)}: {listed}.")
    (top, high), (bottom, low) = points[0], points[-1]
    if len(points) == 1:
        return Text(f"{spec.title}: {money(high, unit)}", f"{top}: {money(high, unit)}.")
    listed = ", ".join(f"{label} {money(v, unit)}" for label, v in points)
    growth = _growth(high, low)
    if growth is not None and growth < STEADY_CHANGE * 100:
        gap = f"{top} and {bottom} are level."
    else:
        gap = f"{top} is {money(high - low, unit)} ({_change(high, low)}) above {bottom}."
    return Text(f"{spec.title}: {top} {money(high, unit)}, {bottom} {money(low, unit)}", f"{listed}. {gap}")


_BY_KIND: dict[str, Callable[[ChartSpec, ChartData], Text]] = {
    "yoy_lines": _yoy, "stacked_bars": _mix, "line": _trend, "breakdown": _groups,
    "share_bars": _categories, "bars": _categories,
}


def write(spec: ChartSpec, data: ChartData) -> Text:
    """The headline and paragraph for validated, non-empty chart data."""
    return _BY_KIND[spec.kind](spec, data)


def trimmed(text: str, limit: int = MAX_CHARS) -> str:
    """A paragraph from elsewhere (the model's), printable and at most `limit` characters: cut at
    the last full sentence that fits, else at a word, with an ellipsis."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = cut.rfind(". ")
    if end >= limit // 2:
        return cut[:end + 1]
    return cut[:limit - 2].rsplit(" ", 1)[0] + " …"

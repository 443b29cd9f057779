"""yoy_lines: one line per year over the months Jan..Dec."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.kinds.base import ChartKind, Comparison, Shape
from runner.wording import (
    MONTH_NAMES,
    is_level,
    money,
    month_name,
    pct,
    percent_change,
    shift_month,
    signed_pct,
    span,
    total,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from runner.charts import ChartSpec
    from runner.records import ChartData, ChartJob


def draw(fig: Figure, job: ChartJob, data: ChartData) -> None:
    from runner.kinds.axes import draw_lines

    draw_lines(fig, job, data, highlight_last=True, legend_title="Year")


def monthly(data: ChartData, series: str | None = None) -> dict[str, float]:
    """The values by month, "YYYY-MM" (of one year's line, or all); none where the labels are not
    calendar months or the series not years."""
    return _by_month(data, series) or {}


def _month_number(label: str) -> int | None:
    """A calendar month's number from its label ("Jan", "January"); None for any other label."""
    word = label.strip()[:3].title()
    return MONTH_NAMES.index(word) + 1 if word in MONTH_NAMES else None


def _by_month(data: ChartData, series: str | None = None) -> dict[str, float] | None:
    """Every month with a value, "YYYY-MM" -> value (a month not shown has none); None where the
    labels are not calendar months or the series not years."""
    panel = data.panels[0]
    numbers = [_month_number(label) for label in panel.labels]
    if None in numbers or not all(s.name.isdigit() and len(s.name) == 4 for s in panel.series):
        return None
    return {f"{s.name}-{number:02d}": value for s in panel.series if series is None or s.name == series
            for number, value in zip(numbers, s.values, strict=True) if value is not None}


def _against(now: float, before: list[float], previous: str, unit: str) -> str:
    """The period's total against the same months a year earlier, named."""
    if not any(before):
        return f"; there was nothing in {previous} to compare with"
    base = total(before)
    measured = percent_change(now, base)
    if measured is None:  # a base of zero or below: no growth rate
        return f", against {money(base, unit)} in {previous}"
    if is_level(now, base):
        return f", level with {previous} ({money(base, unit)}, {signed_pct(measured)})"
    return f", {'up' if measured > 0 else 'down'} {pct(abs(measured))} on {previous} ({money(base, unit)})"


def _extremes(shown: dict[str, float], unit: str) -> str:
    """The best and weakest month shown, counted from the first month that is not zero (months of
    nothing before a merchant traded are not its weakest)."""
    months = sorted(shown)
    start = next(i for i, month in enumerate(months) if shown[month] != 0)
    counted = months[start:]
    best, worst = max(counted, key=lambda m: shown[m]), min(counted, key=lambda m: shown[m])
    if len(counted) < 2 or shown[best] == shown[worst]:
        return ""
    since = f"Since {month_name(counted[0])} (nothing before it), the" if start else "The"
    return f" {since} best month shown was {month_name(best)} ({money(shown[best], unit)}) and the weakest " \
           f"{month_name(worst)} ({money(shown[worst], unit)})."


def sentence(spec: ChartSpec, data: ChartData) -> str:
    """The last twelve months shown (the whole window when shorter) against the same months a year
    earlier, and the best and weakest month. A year without a line had nothing only where the chart
    retrieved the year before its window (spec.compare); a month unknown leaves out the comparison."""

    unit = data.unit
    shown = _by_month(data)
    if shown is None:  # not calendar months by year: the latest line's total, no period named
        lines = [s for s in data.panels[0].series if any(v is not None for v in s.values)]
        if not lines:
            return "No figures for the months shown."
        return f"The {lines[-1].name} line totals {money(total(lines[-1].values), unit)}."
    if not any(v != 0 for v in shown.values()):  # a window of nothing (its year before had something)
        if not shown:
            return "No figures for the months shown."
        return f"Nothing over {span(min(shown), max(shown))}."
    latest = max(shown)
    current = [month for month in sorted(shown) if month > shift_month(latest, -12)]
    now = total(shown[month] for month in current)
    # A month a year earlier is known where shown; a year with no line at all had nothing, where the
    # chart retrieved it (a month sent as null stays unknown: then there is no comparison).
    retrieved = spec.compare is Comparison.PREVIOUS_YEAR
    years = {month[:4] for month in shown}
    earlier = [shown.get(month, None if month[:4] in years or not retrieved else 0.0)
               for month in (shift_month(month, -12) for month in current)]
    against = "" if None in earlier else _against(
        now, [v or 0.0 for v in earlier], span(shift_month(current[0], -12), shift_month(current[-1], -12)), unit)
    text = f"In {span(current[0], current[-1])} the total was {money(now, unit)}{against}."
    return text + _extremes(shown, unit)


KIND = ChartKind(name="yoy_lines", shape=Shape.SERIES, draw=draw, sentence=sentence, fill=0.0, by_year=True,
                 monthly=monthly,
                 agent_note="labels are Jan..Dec, one series per year named by the year")

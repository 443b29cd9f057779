"""line: one or more lines over months (an average, a rate: a month without data is a gap)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.kinds.base import ChartKind, Shape
from runner.wording import is_steady, labels_span, money, month_name, percent_change, points, signed_pct

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from runner.charts import ChartSpec
    from runner.records import ChartData, ChartJob


def draw(fig: Figure, job: ChartJob, data: ChartData) -> None:
    from runner.kinds.axes import draw_lines

    draw_lines(fig, job, data, highlight_last=False)


def monthly(data: ChartData, series: str | None = None) -> dict[str, float]:
    panel = data.panels[0]
    chosen = next((s for s in panel.series if series is None or s.name == series), None)
    if chosen is None:
        return {}
    return {label: value for label, value in zip(panel.labels, chosen.values, strict=True) if value is not None}


def _change(new: float, old: float, unit: str) -> str:
    """The change from `old` to `new` as " (-22.3%)"; a percentage's change in points; nothing from
    a base of zero or below."""
    if unit == "%":
        return f" ({points(new - old)})"
    measured = percent_change(new, old)
    return "" if measured is None else f" ({signed_pct(measured)})"


def sentence(spec: ChartSpec, data: ChartData) -> str:
    """The first line with values, by its monthly values: its range, or that it held steady, and
    its last month against its first. Never a mean of the months: of monthly averages (AOV) that
    is not the period's average."""
    panel, unit = data.panels[0], data.unit
    shown = next((s for s in panel.series if any(v is not None for v in s.values)), None)
    if shown is None:  # the window has no month with a value (the months retrieved before it did)
        return f"No figures over {labels_span(panel.labels[0], panel.labels[-1])}."
    months = [(label, value) for label, value in zip(panel.labels, shown.values, strict=True) if value is not None]
    (first_label, first), (last_label, last) = months[0], months[-1]
    if len(months) == 1:
        return f"{shown.name} was {money(last, unit)} in {month_name(last_label)}."
    period = labels_span(first_label, last_label)
    (low_label, low), (high_label, high) = min(months, key=lambda p: p[1]), max(months, key=lambda p: p[1])
    if is_steady([value for _, value in months]):
        text = f"{shown.name} held steady over {period}, between {money(low, unit)} and {money(high, unit)} " \
               "each month."
    elif len(months) == 2:
        text = f"{shown.name} was {money(last, unit)} in {month_name(last_label)}, against {money(first, unit)} " \
               f"in {month_name(first_label)}{_change(last, first, unit)}."
    else:
        text = f"Over {period}, the monthly {shown.name} ranged from {money(low, unit)} in {month_name(low_label)} " \
               f"to {money(high, unit)} in {month_name(high_label)}. It was {money(last, unit)} in " \
               f"{month_name(last_label)}, against {money(first, unit)} in {month_name(first_label)}" \
               f"{_change(last, first, unit)}."
    return text


KIND = ChartKind(name="line", shape=Shape.SERIES, draw=draw, sentence=sentence, fill=None, monthly=monthly)

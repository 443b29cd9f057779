"""line: one or more lines over months (an average, a rate: a month without data is a gap)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.decks.wording import STEADY_CHANGE, Text, change, growth, money, month_name
from runner.kinds.base import ChartKind, Shape

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from runner.charts import ChartSpec
    from runner.jobs import ChartData, ChartJob


def draw(fig: Figure, job: ChartJob, data: ChartData) -> None:
    from runner.render.axes import draw_lines

    ax = fig.axes[0] if fig.axes else fig.add_subplot()
    panel = data.panels[0]
    draw_lines(ax, panel.labels, [(s.name, s.values) for s in panel.series], data.unit, job.spec.y_label,
               highlight_last=False)


def monthly(data: ChartData, series: str | None = None) -> dict[str, float]:
    panel = data.panels[0]
    chosen = next((s for s in panel.series if series is None or s.name == series), None)
    if chosen is None:
        return {}
    return {label: value for label, value in zip(panel.labels, chosen.values, strict=True) if value is not None}


def sentence(spec: ChartSpec, data: ChartData) -> Text:
    panel, unit = data.panels[0], data.unit
    shown = next(i for i, s in enumerate(panel.series) if any(v is not None for v in s.values))
    points = [(label, value) for label, value in zip(panel.labels, panel.series[shown].values, strict=True)
              if value is not None]
    (first_label, first), (last_label, last) = points[0], points[-1]
    high, low = max(points, key=lambda p: p[1]), min(points, key=lambda p: p[1])
    mean = sum(v for _, v in points) / len(points)
    measured = growth(last, first)
    if measured is not None and abs(measured) < STEADY_CHANGE * 100:
        text = f"{panel.series[shown].name} held steady around {money(mean, unit)}: {money(first, unit)} in " \
               f"{month_name(first_label)} and {money(last, unit)} in {month_name(last_label)}."
    else:
        text = f"{panel.series[shown].name} was {money(last, unit)} in {month_name(last_label)}, against " \
               f"{money(first, unit)} in {month_name(first_label)} ({change(last, first)})."
    if len(points) > 2:
        text += f" It peaked at {money(high[1], unit)} in {month_name(high[0])} and was lowest in " \
                f"{month_name(low[0])} ({money(low[1], unit)}); the average was {money(mean, unit)}."
    return Text(f"{spec.title}: {money(last, unit)} in {month_name(last_label)}, {change(last, first)}", text)


KIND = ChartKind(name="line", about="one or more lines over time", shape=Shape.SERIES, draw=draw,
                 sentence=sentence, fill=None, monthly=monthly)

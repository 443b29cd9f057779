"""yoy_lines: one line per year over the months Jan..Dec."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.decks.wording import STEADY_CHANGE, Text, change, growth, money, pct
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
               highlight_last=True, legend_title="Year")


def monthly(data: ChartData, series: str | None = None) -> dict[str, float]:
    panel = data.panels[0]
    return {f"{s.name}-{month:02d}": value for s in panel.series if series is None or s.name == series
            for month, value in enumerate(s.values, 1) if value is not None}


def sentence(spec: ChartSpec, data: ChartData) -> Text:
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
    measured = growth(now, before)
    if measured is None:
        trend = f"against {money(before, unit)} in the same months of {previous.name}"
    elif abs(measured) < STEADY_CHANGE * 100:
        trend = f"level with {previous.name} ({money(before, unit)})"
    else:
        trend = f"{'up' if measured > 0 else 'down'} {pct(abs(measured))} " \
                f"on the same months of {previous.name} ({money(before, unit)})"
    return Text(f"{spec.title}: {money(now, unit)} in {span} {last.name}, {change(now, before)}",
                f"{span} {last.name} came to {money(now, unit)}, {trend}. {extremes}")


KIND = ChartKind(name="yoy_lines", about="one line per year over Jan..Dec", shape=Shape.SERIES, draw=draw,
                 sentence=sentence, fill=0.0, by_year=True, monthly=monthly,
                 agent_note="labels are Jan..Dec, one series per year named by the year")

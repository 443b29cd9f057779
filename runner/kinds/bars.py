"""bars and share_bars: one bar per category; share_bars are counts labelled with their share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.decks.wording import STEADY_CHANGE, Text, change, growth, money, pct, share
from runner.kinds.base import ChartKind, Shape

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from runner.charts import ChartSpec
    from runner.jobs import ChartData, ChartJob


def _draw(fig: Figure, job: ChartJob, data: ChartData, with_shares: bool) -> None:
    from runner.render.axes import PALETTE, finish_axes, plain, value_formatter

    ax = fig.axes[0] if fig.axes else fig.add_subplot()
    panel = data.panels[0]
    values = [v or 0.0 for v in panel.series[0].values]
    x = list(range(len(values)))
    bars = ax.bar(x, values, width=0.55, color=[PALETTE[i % len(PALETTE)] for i in x])
    total = sum(values)
    fmt = value_formatter(data.unit)
    labels = [f"{fmt(v)}  ({100 * v / total:.1f}%)" if with_shares and total > 0 else fmt(v) for v in values]
    ax.bar_label(bars, labels=labels, padding=6, fontsize=15, fontweight="bold")
    ax.set_xticks(x, [plain(label) for label in panel.labels], fontsize=14)
    finish_axes(ax, job.spec.y_label, data.unit)
    ax.margins(y=0.15)


def draw_bars(fig: Figure, job: ChartJob, data: ChartData) -> None:
    _draw(fig, job, data, with_shares=False)


def draw_shares(fig: Figure, job: ChartJob, data: ChartData) -> None:
    _draw(fig, job, data, with_shares=True)


def _points(data: ChartData) -> list[tuple[str, float]]:
    panel = data.panels[0]
    return sorted(((label, value) for label, value in zip(panel.labels, panel.series[0].values, strict=True)
                   if value is not None), key=lambda p: -p[1])


def sentence_shares(spec: ChartSpec, data: ChartData) -> Text:
    points, unit = _points(data), data.unit
    total = sum(v for _, v in points)
    listed = " and ".join(f"{label} {pct(share(v, total))} ({money(v, unit)})" for label, v in points) \
        if len(points) <= 3 else ", ".join(f"{label} {pct(share(v, total))}" for label, v in points)
    return Text(f"{spec.title}: {points[0][0]} {pct(share(points[0][1], total))}",
                f"Of {money(total, unit)}: {listed}.")


def sentence_bars(spec: ChartSpec, data: ChartData) -> Text:
    points, unit = _points(data), data.unit
    (top, high), (bottom, low) = points[0], points[-1]
    if len(points) == 1:
        return Text(f"{spec.title}: {money(high, unit)}", f"{top}: {money(high, unit)}.")
    listed = ", ".join(f"{label} {money(v, unit)}" for label, v in points)
    measured = growth(high, low)
    if measured is not None and measured < STEADY_CHANGE * 100:
        gap = f"{top} and {bottom} are level."
    else:
        gap = f"{top} is {money(high - low, unit)} ({change(high, low)}) above {bottom}."
    return Text(f"{spec.title}: {top} {money(high, unit)}, {bottom} {money(low, unit)}", f"{listed}. {gap}")


BARS = ChartKind(name="bars", about="one bar per category with its value", shape=Shape.CATEGORIES,
                 draw=draw_bars, sentence=sentence_bars)
SHARE_BARS = ChartKind(name="share_bars", about="counts per category, labelled with their share",
                       shape=Shape.CATEGORIES, draw=draw_shares, sentence=sentence_shares, parts_of_a_whole=True)

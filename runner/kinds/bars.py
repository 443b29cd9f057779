"""bars and share_bars: one bar per category; share_bars are counts labelled with their share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.kinds.base import ChartKind, Shape
from runner.wording import is_level, money, pct, percent_change, points, share, signed_pct, total

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from runner.charts import ChartSpec
    from runner.records import ChartData, ChartJob


def _draw(fig: Figure, job: ChartJob, data: ChartData, with_shares: bool) -> None:
    from runner.kinds.axes import PALETTE, finish_axes, one_axes, plain, value_formatter

    ax = one_axes(fig)
    panel = data.panels[0]
    values = [v or 0.0 for v in panel.series[0].values]
    x = list(range(len(values)))
    bars = ax.bar(x, values, width=0.55, color=[PALETTE[i % len(PALETTE)] for i in x])
    whole = sum(values)
    fmt = value_formatter(data.unit)
    labels = [f"{fmt(v)}  ({pct(share(v, whole))})" if with_shares and whole > 0 else fmt(v) for v in values]
    ax.bar_label(bars, labels=labels, padding=6, fontsize=13, fontweight="bold")
    ax.set_xticks(x, [plain(label) for label in panel.labels], fontsize=13)
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


def sentence_shares(spec: ChartSpec, data: ChartData) -> str:
    ranked, unit = _points(data), data.unit
    whole = total(v for _, v in ranked)
    listed = " and ".join(f"{label} {pct(share(v, whole))} ({money(v, unit)})" for label, v in ranked) \
        if len(ranked) <= 3 else ", ".join(f"{label} {pct(share(v, whole))}" for label, v in ranked)
    return f"Of {money(whole, unit)}: {listed}."


def sentence_bars(spec: ChartSpec, data: ChartData) -> str:
    ranked, unit = _points(data), data.unit
    (top, high), (bottom, low) = ranked[0], ranked[-1]
    if len(ranked) == 1:
        return f"{top}: {money(high, unit)}."
    listed = ", ".join(f"{label} {money(v, unit)}" for label, v in ranked)
    if is_level(high, low):
        gap = f"{top} and {bottom}{', the highest and the lowest,' if len(ranked) > 2 else ''} are level."
    elif unit == "%":  # a gap between percentages is in points
        gap = f"{top} is {points(high - low, signed=False)} above {bottom}."
    else:
        measured = percent_change(high, low)
        gap = f"{top} is {money(high - low, unit)}{'' if measured is None else f' ({signed_pct(measured)})'} " \
              f"above {bottom}."
    return f"{listed}. {gap}"


BARS = ChartKind(name="bars", shape=Shape.CATEGORIES, draw=draw_bars, sentence=sentence_bars)
SHARE_BARS = ChartKind(name="share_bars", shape=Shape.CATEGORIES, draw=draw_shares, sentence=sentence_shares,
                       parts_of_a_whole=True)

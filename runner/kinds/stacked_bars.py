"""stacked_bars: a bar per month, one segment per series (parts of the month's total)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.kinds.base import ChartKind, Shape
from runner.wording import STEADY_POINTS, labels_span, money, pct, share, total

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from runner.charts import ChartSpec
    from runner.records import ChartData, ChartJob, Panel


def draw(fig: Figure, job: ChartJob, data: ChartData) -> None:
    from runner.kinds.axes import (
        PALETTE,
        bar_totals,
        finish_axes,
        legend_above,
        month_ticks,
        one_axes,
        plain,
        value_formatter,
    )

    ax = one_axes(fig)
    panel = data.panels[0]
    x = list(range(len(panel.labels)))
    bottoms = [0.0] * len(x)
    for i, series in enumerate(panel.series):
        heights = [v or 0.0 for v in series.values]
        ax.bar(x, heights, bottom=bottoms, width=0.75, color=PALETTE[i % len(PALETTE)], label=plain(series.name))
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    month_ticks(ax, panel.labels)
    finish_axes(ax, job.spec.y_label, data.unit)
    ax.margins(y=0.12)
    legend_above(ax)
    bar_totals(ax, bottoms, value_formatter(data.unit))  # after the legend: it takes height from the axes


def monthly(data: ChartData, series: str | None = None) -> dict[str, float]:
    panel = data.panels[0]
    out: dict[str, float] = {}
    for s in panel.series:
        if series is None or s.name == series:
            for label, value in zip(panel.labels, s.values, strict=True):
                out[label] = out.get(label, 0.0) + (value or 0.0)
    return out


def _shares(panel: Panel, months: slice) -> dict[str, float]:
    totals = {s.name: total(s.values[months]) for s in panel.series}
    whole = total(totals.values())
    return {name: share(value, whole) for name, value in totals.items()}


def sentence(spec: ChartSpec, data: ChartData) -> str:
    """The mix over the months shown, and the largest shift between its first and last months with
    data (up to three of each), every period named."""
    panel, unit = data.panels[0], data.unit
    labels = panel.labels
    everything = total(v for s in panel.series for v in s.values)
    if not everything:  # the window held nothing (the year before it did)
        return f"Nothing over {labels_span(labels[0], labels[-1])}."
    overall = sorted(_shares(panel, slice(None)).items(), key=lambda item: -item[1])
    listed = ", ".join(f"{name} {pct(part)}" for name, part in overall)
    text = f"Of {money(everything, unit)} over {labels_span(labels[0], labels[-1])}: {listed}."
    with_data = [i for i in range(len(labels)) if any(s.values[i] for s in panel.series)]
    if len(panel.series) > 1 and len(with_data) >= 6:
        window = max(1, min(3, len(with_data) // 4))
        early, late = (with_data[0], with_data[window - 1]), (with_data[-window], with_data[-1])
        first = _shares(panel, slice(early[0], early[1] + 1))
        last = _shares(panel, slice(late[0], late[1] + 1))
        between = f"between {labels_span(labels[early[0]], labels[early[1]])} and " \
                  f"{labels_span(labels[late[0]], labels[late[1]])}"
        # Compared as printed (one decimal of a point): with two categories both move by the same
        # amount, and float noise (SQLite's 3771.5199999 vs 3771.52) must not pick which is named;
        # a tie names the larger category.
        weight = {n: round(part, 1) for n, part in overall}
        name = max(first, key=lambda n: (round(abs(last[n] - first[n]), 1), weight.get(n, 0.0)))
        if all(abs(last[n] - first[n]) < STEADY_POINTS for n in first):
            text += f" The mix held steady {between}: no share moved by a point or more."
        else:
            verb = "rose" if last[name] > first[name] else "fell"
            text += f" The largest shift: {name} {verb} from {pct(first[name])} to {pct(last[name])} {between}."
    return text


KIND = ChartKind(name="stacked_bars", shape=Shape.SERIES, draw=draw, sentence=sentence, fill=0.0,
                 parts_of_a_whole=True, monthly=monthly)

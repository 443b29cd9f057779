"""Drawing the chart kinds on a matplotlib Figure (object API only: no pyplot state).

Each kind is drawn for a business-review reader at 1600x900: a title and subtitle, axis
labels with units, a legend where there is more than one series, and percentages where
the data are shares.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from runner.decks.paragraphs import unsigned_zero
from runner.jobs import ChartData, ChartJob

PALETTE = ("#1b4f72", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#d4ac0d")
_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")
Formatter = Callable[..., str]  # (value, tick position=None) -> label, as matplotlib calls it

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

STYLE: dict[str, Any] = {
    "font.size": 13,
    "axes.titlesize": 20,
    "axes.labelsize": 14,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def plain(text: str) -> str:
    """Text from the data drawn as it is: a pair of '$' would otherwise start math (and a
    malformed formula fails the whole drawing)."""
    return text.replace("$", r"\$")


def _money(unit: str) -> Formatter:
    symbol = "€" if unit.upper() in ("EUR", "€") else ""

    def fmt(value: float, _pos: object = None) -> str:
        size = abs(value)
        if size >= 1e6:
            return symbol + unsigned_zero(f"{value / 1e6:.1f}") + "M"
        if size >= 1e4:
            return symbol + unsigned_zero(f"{value / 1e3:.0f}") + "k"
        if size >= 1e3:
            return symbol + unsigned_zero(f"{value / 1e3:.1f}") + "k"
        return symbol + unsigned_zero(f"{value:,.0f}")

    return fmt


def _value_formatter(unit: str) -> Formatter:
    if unit == "%":
        return lambda v, _pos=None: unsigned_zero(f"{v:.0f}") + "%"
    if unit.upper() in ("EUR", "€"):
        return _money(unit)
    return lambda v, _pos=None: unsigned_zero(f"{v:,.0f}")


def _month_labels(labels: tuple[str, ...]) -> list[str]:
    """'2024-01' -> 'Jan\\n2024' at January and the first label, 'Feb' elsewhere."""
    out = []
    for i, label in enumerate(labels):
        match = _MONTH.match(label)
        if not match or not 1 <= int(match[2]) <= 12:
            return [plain(label) for label in labels]
        month = _MONTH_NAMES[int(match[2]) - 1]
        out.append(f"{month}\n{match[1]}" if i == 0 or match[2] == "01" else month)
    return out


def _finish_axes(ax: Axes, spec_y_label: str, unit: str) -> None:
    ax.set_ylabel(spec_y_label or plain(unit))
    ax.yaxis.set_major_formatter(FuncFormatter(_value_formatter(unit)))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=7))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _draw_lines(ax: Axes, job: ChartJob, data: ChartData, highlight_last: bool) -> None:
    panel = data.panels[0]
    x = range(len(panel.labels))
    for i, series in enumerate(panel.series):
        ys = [float("nan") if v is None else v for v in series.values]
        last = i == len(panel.series) - 1
        ax.plot(x, ys, marker="o", markersize=5 if not last else 7, linewidth=3.0 if (last and highlight_last) else 2.0,
                color=PALETTE[i % len(PALETTE)], label=plain(series.name))
    ax.set_xticks(list(x), _month_labels(panel.labels))
    ax.set_xlabel("Month")
    _finish_axes(ax, job.spec.y_label, data.unit)
    ax.set_ylim(bottom=0)
    if len(panel.series) > 1:
        ax.legend(title="Year" if job.spec.kind == "yoy_lines" else None, frameon=False, loc="upper left")
    else:
        values = [v for v in panel.series[0].values if v is not None]
        mean = sum(values) / len(values)
        ax.axhline(mean, color="#7f8c8d", linestyle="--", linewidth=1.2)
        ax.annotate(f"average {_value_formatter(data.unit)(mean)}", xy=(0, mean), xytext=(4, 6),
                    textcoords="offset points", color="#555555", fontsize=12)


def _draw_stacked(ax: Axes, job: ChartJob, data: ChartData) -> None:
    panel = data.panels[0]
    x = list(range(len(panel.labels)))
    bottoms = [0.0] * len(x)
    for i, series in enumerate(panel.series):
        heights = [v or 0.0 for v in series.values]
        ax.bar(x, heights, bottom=bottoms, width=0.75, color=PALETTE[i % len(PALETTE)], label=plain(series.name))
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    if len(x) <= 36:
        fmt = _value_formatter(data.unit)
        for xi, total in zip(x, bottoms, strict=True):
            ax.annotate(fmt(total), (xi, total), xytext=(0, 3), textcoords="offset points", ha="center",
                        fontsize=9, color="#444444")
    ax.set_xticks(x, _month_labels(panel.labels))
    ax.set_xlabel("Month")
    _finish_axes(ax, job.spec.y_label, data.unit)
    ax.legend(frameon=False, ncols=len(panel.series), loc="upper left")
    ax.margins(y=0.12)


def _draw_bars(ax: Axes, job: ChartJob, data: ChartData, with_shares: bool) -> None:
    panel = data.panels[0]
    values = [v or 0.0 for v in panel.series[0].values]
    x = list(range(len(values)))
    bars = ax.bar(x, values, width=0.55, color=[PALETTE[i % len(PALETTE)] for i in x])
    total = sum(values)
    fmt = _value_formatter(data.unit)
    labels = [f"{fmt(v)}  ({100 * v / total:.1f}%)" if with_shares and total > 0 else fmt(v) for v in values]
    ax.bar_label(bars, labels=labels, padding=6, fontsize=15, fontweight="bold")
    ax.set_xticks(x, [plain(label) for label in panel.labels], fontsize=14)
    _finish_axes(ax, job.spec.y_label, data.unit)
    ax.margins(y=0.15)


def _draw_breakdown(axes: list[Axes], job: ChartJob, data: ChartData) -> None:
    for ax, panel in zip(axes, data.panels, strict=True):
        left = 0.0
        values = [v or 0.0 for v in panel.series[0].values]
        for i, (label, share) in enumerate(zip(panel.labels, values, strict=True)):
            ax.barh([0], [share], left=left, height=0.7, color=PALETTE[i % len(PALETTE)], edgecolor="white")
            if share >= 6:
                ax.text(left + share / 2, 0, f"{plain(label)}\n{share:.1f}%", ha="center", va="center",
                        color="white", fontsize=12, fontweight="bold")
            elif share > 0:
                centre = left + share / 2
                align = "right" if centre > 90 else ("left" if centre < 10 else "center")
                ax.annotate(f"{plain(label)} {share:.1f}%", (centre, 0.38), xytext=(0, 4),
                            textcoords="offset points", ha=align, fontsize=10)
            left += share
        ax.set_xlim(0, 100)
        ax.set_yticks([0], [plain(panel.title)], fontsize=14)
        ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
        for side in ("left", "top", "right"):
            ax.spines[side].set_visible(False)
        ax.tick_params(axis="y", length=0)
    axes[-1].set_xlabel(job.spec.y_label or "Share (%)")


def figure_layout(job: ChartJob, data: ChartData) -> tuple[str, int]:
    """Charts with the same layout can be drawn on the same (cleared) figure."""
    return job.spec.kind, len(data.panels)


def clear_chart(fig: Figure) -> None:
    """Remove what draw_chart added, keeping the axes and their ticks.

    Making axes and ticks is about a third of a chart's CPU, so a worker draws each layout on
    one figure again and again; the result is the same, pixel for pixel (tests/test_render.py).
    """
    for ax in fig.axes:
        for container in list(ax.containers):
            container.remove()
        for artist in [*ax.lines, *ax.patches, *ax.texts, *ax.collections]:
            artist.remove()
        legend = ax.get_legend()
        if legend is not None:
            legend.remove()
        ax.relim()
        ax.set_autoscale_on(True)  # set_ylim turned it off
    for text in list(fig.texts):
        text.remove()


def draw_chart(fig: Figure, job: ChartJob, data: ChartData) -> None:
    """Draw on a new figure, or on one of the same layout after clear_chart."""
    kind = job.spec.kind
    subtitle = f"Merchant {job.merchant}  ·  {job.start_date} to {job.end_date}"
    fig.suptitle(job.spec.title, fontsize=22, fontweight="bold", x=0.06, ha="left", y=0.97)
    fig.text(0.06, 0.905, subtitle, fontsize=13, color="#555555", ha="left")
    if kind == "breakdown":
        if not fig.axes:
            fig.subplots(len(data.panels), 1, squeeze=False)
        _draw_breakdown(fig.axes, job, data)
    else:
        ax = fig.axes[0] if fig.axes else fig.add_subplot()
        if kind in ("yoy_lines", "line"):
            _draw_lines(ax, job, data, highlight_last=kind == "yoy_lines")
        elif kind == "stacked_bars":
            _draw_stacked(ax, job, data)
        elif kind in ("bars", "share_bars"):
            _draw_bars(ax, job, data, with_shares=kind == "share_bars")
        else:  # pragma: no cover - the pack loader rejects unknown kinds
            raise ValueError(f"unknown chart kind {kind!r}")
    fig.subplots_adjust(left=0.08, right=0.97, top=0.85, bottom=0.1, hspace=0.5)

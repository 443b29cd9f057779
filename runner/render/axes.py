"""What the chart kinds share when they draw: colours, number formats on axes, month ticks.

Imports matplotlib, so the kinds import this inside their drawing functions: a run's
coordinator and the CLI never need matplotlib to know a kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, MaxNLocator

from runner.decks.wording import is_money, unsigned_zero

PALETTE = ("#1b4f72", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#d4ac0d")
_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")
Formatter = Callable[..., str]  # (value, tick position=None) -> label, as matplotlib calls it

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def plain(text: str) -> str:
    """Text from the data drawn as it is: a pair of '$' would otherwise start math (and a
    malformed formula fails the whole drawing)."""
    return text.replace("$", r"\$")


def _money(unit: str) -> Formatter:
    symbol = "€" if is_money(unit) else ""

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


def value_formatter(unit: str) -> Formatter:
    if unit == "%":
        return lambda v, _pos=None: unsigned_zero(f"{v:.0f}") + "%"
    if is_money(unit):
        return _money(unit)
    return lambda v, _pos=None: unsigned_zero(f"{v:,.0f}")


def month_labels(labels: tuple[str, ...]) -> list[str]:
    """'2024-01' -> 'Jan\\n2024' at January and the first label, 'Feb' elsewhere."""
    out = []
    for i, label in enumerate(labels):
        match = _MONTH.match(label)
        if not match or not 1 <= int(match[2]) <= 12:
            return [plain(label) for label in labels]
        month = _MONTH_NAMES[int(match[2]) - 1]
        out.append(f"{month}\n{match[1]}" if i == 0 or match[2] == "01" else month)
    return out


def finish_axes(ax: Axes, y_label: str, unit: str) -> None:
    ax.set_ylabel(y_label or plain(unit))
    ax.yaxis.set_major_formatter(FuncFormatter(value_formatter(unit)))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=7))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def draw_lines(ax: Axes, labels: tuple[str, ...], series: list[tuple[str, tuple[float | None, ...]]], unit: str,
               y_label: str, highlight_last: bool, legend_title: str | None = None) -> None:
    """One line per series over the labels, markers at each value, a gap where a value is None;
    a legend for several lines, a dashed average for one."""
    x = range(len(labels))
    for i, (name, values) in enumerate(series):
        ys = [float("nan") if v is None else v for v in values]
        last = i == len(series) - 1
        ax.plot(x, ys, marker="o", markersize=5 if not last else 7, linewidth=3.0 if (last and highlight_last) else 2.0,
                color=PALETTE[i % len(PALETTE)], label=plain(name))
    ax.set_xticks(list(x), month_labels(labels))
    ax.set_xlabel("Month")
    finish_axes(ax, y_label, unit)
    ax.set_ylim(bottom=0)
    if len(series) > 1:
        ax.legend(title=legend_title, frameon=False, loc="upper left")
    else:
        present = [v for v in series[0][1] if v is not None]
        mean = sum(present) / len(present)
        ax.axhline(mean, color="#7f8c8d", linestyle="--", linewidth=1.2)
        ax.annotate(f"average {value_formatter(unit)(mean)}", xy=(0, mean), xytext=(4, 6),
                    textcoords="offset points", color="#555555", fontsize=12)

"""What the chart kinds share when they draw: colours, number formats on axes, month ticks,
legends, labels over bars, and the width of a text in points.

A chart is drawn at the size it is placed on the slide (runner.decks.slides.CHART_PLACE_IN), so a
font size here is the size a reader sees, and no chart text is under MIN_TEXT_PT. Where labels
could collide (many months, thin bars, small parts) these helpers measure what fits and write
fewer or turned labels rather than overlapping ones.

Imports matplotlib, so the kinds import this inside their drawing functions: a run's
coordinator and the CLI never need matplotlib to know a kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from math import ceil
from typing import TYPE_CHECKING

from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, get_font
from matplotlib.ft2font import LoadFlags
from matplotlib.ticker import FuncFormatter, MaxNLocator

from runner.wording import MONTH_NAMES, is_money, pct, unsigned_zero, year_month

if TYPE_CHECKING:
    from runner.records import ChartData, ChartJob

PALETTE = ("#1b4f72", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#d4ac0d")
MIN_TEXT_PT = 12.0  # the smallest chart text, in points on the slide
LABEL_PT = MIN_TEXT_PT  # values written over bars and parts
LINE = 1.2  # matplotlib's line height, in font sizes
Formatter = Callable[..., str]  # (value, tick position=None) -> label, as matplotlib calls it

_MONTH_STEPS = (1, 2, 3, 4, 6, 12)  # every n-th month named: steps that keep January named
_GAP_PT = 6.0  # the least room between two labels side by side


def plain(text: str) -> str:
    """Text from the data drawn as it is: a pair of '$' would otherwise start math (and a
    malformed formula fails the whole drawing)."""
    return text.replace("$", r"\$")


# -- measuring ----------------------------------------------------------------------------------------------
_FALLBACK_EM = 0.65  # the advance taken for a character that cannot be measured: wider than most


@cache
def _advance(char: str, bold: bool) -> float:
    """A character's advance at 1 pt in the charts' font."""
    font = get_font(findfont(FontProperties(weight="bold" if bold else "normal")))
    font.set_size(100, 72)  # matplotlib shares this font object: every user sets its size first
    try:
        glyph = font.load_char(ord(char), flags=LoadFlags.NO_HINTING)
    except RuntimeError:  # a character FreeType cannot load here ("No glyphs have been loaded")
        return _FALLBACK_EM
    return glyph.linearHoriAdvance / 65536 / 100


def text_width(text: str, size: float, bold: bool = False) -> float:
    """The width of a text in points, its widest line; kerning left out (a point or so at most).
    Character by character, cached: laying out each label through FreeType costs more than
    drawing it."""
    return max(sum(_advance(char, bold) for char in line) for line in text.split("\n")) * size


def one_axes(fig: Figure) -> Axes:
    """The axes of a one-panel chart: made on a new figure, the same again on a reused one
    (runner.render.draw.clear_chart keeps them)."""
    return fig.axes[0] if fig.axes else fig.add_subplot()


def figure_of(ax: Axes) -> Figure:
    fig = ax.get_figure(root=True)
    assert fig is not None  # the kinds draw on axes of a figure
    return fig


def axes_size_pt(ax: Axes) -> tuple[float, float]:
    box = ax.get_position()
    width_in, height_in = figure_of(ax).get_size_inches()
    return box.width * width_in * 72, box.height * height_in * 72


def points_per_x(ax: Axes) -> float:
    """How many points one unit of x spans (the x limits as autoscaled so far)."""
    low, high = ax.get_xlim()
    return axes_size_pt(ax)[0] / (high - low)


# -- numbers ------------------------------------------------------------------------------------------------
_SCALES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))


def _compact(symbol: str) -> Formatter:
    """At most four digits: the y axis' tick labels fit the figure's fixed left margin."""

    def fmt(value: float, _pos: object = None) -> str:
        size = abs(value)
        for scale, suffix in _SCALES:
            if size >= scale and (symbol or size >= 1e4):
                scaled = value / scale
                return symbol + unsigned_zero(f"{scaled:.0f}" if abs(scaled) >= 10 else f"{scaled:.1f}") + suffix
        return symbol + unsigned_zero(f"{value:,.0f}")

    return fmt


def value_formatter(unit: str) -> Formatter:
    """Short numbers for axes and labels: €1.2k, €35k, €1.2M, €12B; counts 1,234, 35k, 1.2M; 12%."""
    if unit == "%":
        return lambda v, _pos=None: unsigned_zero(f"{v:.0f}") + "%"
    return _compact("€" if is_money(unit) else "")


def finish_axes(ax: Axes, y_label: str, unit: str) -> None:
    ax.set_ylabel(y_label or plain(unit))
    ax.yaxis.set_major_formatter(FuncFormatter(value_formatter(unit)))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=7))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


# -- months -------------------------------------------------------------------------------------------------
def month_labels(labels: tuple[str, ...], step: int = 1) -> list[str]:
    """'2024-01' -> 'Jan\\n2024' at the first named month and each January, 'Feb' elsewhere;
    with a step, only every step-th month from January is named ('' for the others).
    Labels that are not all months are written as they are."""
    months = [year_month(label) for label in labels]
    out: list[str] = []
    named = False
    for parts in months:
        if parts is None:
            return [plain(label) for label in labels]
        year, month = parts
        if (month - 1) % step:
            out.append("")
            continue
        name = MONTH_NAMES[month - 1]
        out.append(f"{name}\n{year:04d}" if not named or month == 1 else name)
        named = True
    return out


def month_ticks(ax: Axes, labels: tuple[str, ...]) -> None:
    """A tick at each label (at x = 0, 1, 2, ...), named as densely as the names fit side by side
    (see month_labels). The x axis spans every label, whatever the values (gaps, zeros)."""
    ax.set_xlim(-0.5, len(labels) - 0.5)
    size = float(rcParams["xtick.labelsize"])
    widest = max(text_width(text, size) for text in (*MONTH_NAMES, "2000"))
    spacing = points_per_x(ax)
    step = next((s for s in _MONTH_STEPS if widest + _GAP_PT <= s * spacing), _MONTH_STEPS[-1])
    ax.set_xticks(range(len(labels)), month_labels(labels, step))


# -- legends and labels -------------------------------------------------------------------------------------
def legend_above(ax: Axes, title: str | None = None) -> None:
    """The legend in rows above the axes, as many entries a row as fit the figure's width; the
    axes give up the height it takes, so it covers no line or bar."""
    _handles, names = ax.get_legend_handles_labels()
    if not names:
        return
    fig = figure_of(ax)
    size = float(rcParams["legend.fontsize"])
    room = fig.get_figwidth() * 72 * (1 - ax.get_position().x0) - size
    column = max(text_width(name, size) for name in names) + 4.8 * size  # handle 2em, gap 0.8em, spacing 2em
    columns = max(1, min(len(names), int((room + 2 * size) // column)))
    rows = ceil(len(names) / columns) + (1 if title else 0)
    height = (rows * LINE + (rows - 1) * 0.5 + 0.8) * size + 2  # rows, spacing between them, padding
    fig.subplots_adjust(top=ax.get_position().y1 - height / (fig.get_figheight() * 72))
    ax.legend(title=title, ncols=columns, loc="lower left", bbox_to_anchor=(0, 1), borderaxespad=0.0,
              frameon=False, alignment="left")


def bar_totals(ax: Axes, totals: Sequence[float], fmt: Formatter) -> None:
    """Each bar's total over it: level where every total fits its bar's width, turned upright
    where only that fits, none where the bars are too thin even for that. The y axis gets the
    headroom they take. Bars stand at x = 0, 1, 2, ...; totals are not negative."""
    texts = [fmt(total) if total else "" for total in totals]  # a month of nothing needs no "0" over it
    spacing, height = points_per_x(ax), axes_size_pt(ax)[1]
    widest = max(text_width(text, LABEL_PT) for text in texts)
    if widest + _GAP_PT / 2 <= spacing:  # level labels line up in a row: a narrower gap reads well
        rotation, extent = 0, LABEL_PT * LINE
    elif LABEL_PT * LINE + _GAP_PT / 2 <= spacing:
        rotation, extent = 90, widest
    else:
        return
    for x, (total, text) in enumerate(zip(totals, texts, strict=True)):
        if not text:
            continue
        ax.annotate(text, (x, total), xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                    rotation=rotation, fontsize=LABEL_PT, color="#444444")
    top = max(totals) * height / (height - extent - 3 - _GAP_PT)
    if top > 0:
        ax.set_ylim(0, top)


def pack(centres: Sequence[float], widths: Sequence[float], low: float, high: float) -> list[float]:
    """Label centres on a line, each moved as little as it takes for no two to overlap and all
    to stay within low..high (as far as they fit at all). Centres in order, left to right."""
    lefts: list[float] = []
    edge = low
    for centre, width in zip(centres, widths, strict=True):
        lefts.append(max(centre - width / 2, edge))
        edge = lefts[-1] + width + _GAP_PT
    edge = high
    for i in reversed(range(len(lefts))):
        lefts[i] = min(lefts[i], edge - widths[i])
        edge = lefts[i] - _GAP_PT
    return [left + width / 2 for left, width in zip(lefts, widths, strict=True)]


@dataclass(frozen=True)
class _Outside:
    text: str
    centre: float  # of its part, in points from the axes' left
    width: float  # of the text, in points
    part: float


def part_labels(ax: Axes, labels: Sequence[str], parts: Sequence[float], bar_top: float) -> None:
    """Labels of a 100% bar's parts (x in percent, the bar from y=-bar_top to bar_top): inside a
    part, in white, where the name and share fit; else in a row over the bar, moved aside as
    little as needed to not overlap, with a line to their part when moved off it. When more are
    too narrow than the row holds, the smallest parts go unlabelled."""
    width = axes_size_pt(ax)[0]
    scale = width / 100  # points per percent
    outside: list[_Outside] = []
    left = 0.0
    for label, part in zip(labels, parts, strict=True):
        centre = left + part / 2
        inside = f"{plain(label)}\n{pct(part)}"
        if part > 0 and text_width(inside, LABEL_PT, bold=True) + _GAP_PT <= part * scale:
            ax.text(centre, 0, inside, ha="center", va="center", color="white", fontsize=LABEL_PT, fontweight="bold")
        elif part > 0:
            text = f"{plain(label)} {pct(part)}"
            outside.append(_Outside(text, centre * scale, text_width(text, LABEL_PT), part))
        left += part
    while outside and sum(o.width + _GAP_PT for o in outside) - _GAP_PT > width:
        outside.remove(min(reversed(outside), key=lambda o: o.part))
    placed = pack([o.centre for o in outside], [o.width for o in outside], 0.0, width)
    for out, at in zip(outside, placed, strict=True):
        moved = abs(at - out.centre) > out.width / 2
        ax.annotate(out.text, (out.centre / scale, bar_top), xytext=(at - out.centre, 5),
                    textcoords="offset points", ha="center", va="bottom", fontsize=LABEL_PT, color="#333333",
                    # A part at the very edge has its point on the axes' border: drawn all the same.
                    annotation_clip=False,
                    arrowprops={"arrowstyle": "-", "color": "#888888", "linewidth": 0.8} if moved else None)


def draw_lines(fig: Figure, job: ChartJob, data: ChartData, highlight_last: bool, legend_title: str | None = None,
               ) -> None:
    """One line per series over the labels, markers at each value, a gap where a value is None; the
    legend above the axes. No average of the months is drawn: of monthly averages (AOV) it is not
    the period's average, which the deck's summary gives."""
    ax = one_axes(fig)
    panel = data.panels[0]
    x = range(len(panel.labels))
    for i, series in enumerate(panel.series):
        ys = [float("nan") if v is None else v for v in series.values]
        last = i == len(panel.series) - 1
        ax.plot(x, ys, marker="o", markersize=5 if not last else 7, linewidth=3.0 if (last and highlight_last) else 2.0,
                color=PALETTE[i % len(PALETTE)], label=plain(series.name))
    month_ticks(ax, panel.labels)
    finish_axes(ax, job.spec.y_label, data.unit)
    ax.set_ylim(bottom=0)
    legend_above(ax, legend_title)

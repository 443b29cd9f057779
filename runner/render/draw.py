"""Drawing a chart on a matplotlib Figure (object API only: no pyplot state).

What a kind draws is its registry entry's (runner.kinds); this module gives every chart the
same frame: the style, the margins, and the reuse of one figure per layout.

The figure holds only the chart (axes, legend, labels): the slide above it carries the title,
and the slide's footer the merchant and the period. It is drawn at the size the slide places it
(runner.decks.slides.CHART_PLACE_IN, the render worker's figure size), so every font size here is
the size a reader sees, never under axes.MIN_TEXT_PT (tests/test_slide_charts.py).

Text is set in DejaVu Sans, the decks' typeface too (runner.fonts). matplotlib says of a character
the font lacks "Glyph … missing" as a Python warning; glyph_warnings takes those in as characters
(the run warns of them once, runner.fonts.GlyphReport), and the worker draws such a chart again
with the machine's fonts that have them (fallback_style).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

from runner.fonts import FAMILY, chart_families
from runner.kinds import KINDS
from runner.kinds.axes import MIN_TEXT_PT
from runner.records import ChartData, ChartJob

STYLE: dict[str, Any] = {
    "font.family": [FAMILY],  # matplotlib's default font, named: the PDF and the PPTX use it too
    "font.size": MIN_TEXT_PT,
    "axes.titlesize": MIN_TEXT_PT + 1,
    "axes.labelsize": MIN_TEXT_PT + 1,
    "xtick.labelsize": MIN_TEXT_PT,
    "xtick.major.pad": 5,  # the first month's name, when near the y axis, stays clear of the lowest y label
    "ytick.labelsize": MIN_TEXT_PT,
    "legend.fontsize": MIN_TEXT_PT,
    "legend.title_fontsize": MIN_TEXT_PT,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@dataclass(frozen=True)
class Margins:
    """Room around the axes, in inches. Fixed rather than measured (tight_layout would add a
    fifth to a chart's CPU), so a kind knows its axes' size in points before it draws and can
    fit its labels to it; a legend above the axes takes its height from the top (axes.legend_above).
    The left holds a y label and tick labels of up to six characters (numbers are compact: €35k,
    axes.value_formatter)."""

    left: float = 1.1
    right: float = 0.25
    top: float = 0.15
    bottom: float = 0.62
    between: float = 0.3  # between the panels of a chart with several


MARGINS = Margins()


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


def frame(fig: Figure, panels: int) -> None:
    """The margins, in the figure's fractions; panels stacked with a fixed gap between them."""
    width, height = fig.get_size_inches()
    m = MARGINS
    panel_height = (height - m.top - m.bottom - (panels - 1) * m.between) / panels
    fig.subplots_adjust(left=m.left / width, right=1 - m.right / width, top=1 - m.top / height,
                        bottom=m.bottom / height, hspace=m.between / panel_height)


def draw_chart(fig: Figure, job: ChartJob, data: ChartData) -> None:
    """Draw on a new figure, or on one of the same layout after clear_chart. No title: the slide has it."""
    frame(fig, len(data.panels))  # before the kind draws: it fits its labels to the axes
    KINDS[job.spec.kind].draw(fig, job, data)


_GLYPH_WARNING = re.compile(r"Glyph (\d+) \(")


@contextmanager
def glyph_warnings() -> Iterator[set[str]]:
    """The characters matplotlib found no glyph for while drawing in the block, from its
    'Glyph … missing' warnings, which go no further; other warnings are passed on as they were.
    The set is filled when the block ends."""
    found: set[str] = set()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield found
    for warning in caught:
        match = _GLYPH_WARNING.match(str(warning.message))
        if match and issubclass(warning.category, UserWarning):
            found.add(chr(int(match[1])))
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno,
                                   source=warning.source)


def fallback_style(missing: set[str]) -> dict[str, Any] | None:
    """The style to draw a chart again with, where the machine has fonts for characters DejaVu
    Sans lacks: those fonts after it (matplotlib takes each glyph from the first font that has it)."""
    families = chart_families(missing)
    return {"font.family": [FAMILY, *families]} if families else None

"""One merchant's deck as slides: what each slide says and where things sit on it, the same in every format.

Runs in a render worker (the render stage hands decks to the same pool as charts). The slides
are: a title slide, one per chart in pack order (title, chart, paragraph; for a missing chart
"not available", or no slide with partial_decks=omit), and a summary of the key figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from runner.decks.pdf import PAGE_H, text_width
from runner.decks.summary import Headline, headlines
from runner.figures import Period
from runner.kinds import paragraphs
from runner.kinds.window import shown_data
from runner.records import DeckTask
from runner.status import PartialDecks
from runner.wording import MONTH_NAMES

INK = (0.10, 0.10, 0.10)
MUTED = (0.40, 0.40, 0.40)
ACCENT = (0.106, 0.310, 0.447)  # the charts' first colour
PANEL = (0.95, 0.95, 0.95)
# In place of a chart that failed. Why it failed is for the report and the log, never the merchant.
NOT_AVAILABLE = "Not available for this period"


class SlideKind(StrEnum):
    TITLE = "title"
    CHART = "chart"
    SUMMARY = "summary"


@dataclass(frozen=True)
class Slide:
    title: str
    subtitle: str = ""
    paragraph: str = ""
    png: bytes | None = None
    missing: str | None = None  # NOT_AVAILABLE, in place of the chart
    lines: tuple[str, ...] = ()  # the title slide's date line; the summary's note on missing charts
    headlines: tuple[Headline, ...] = ()  # the summary's key figures
    chart_id: str = ""  # a chart slide's chart
    kind: SlideKind = SlideKind.CHART


def day(iso: str) -> str:
    value = date.fromisoformat(iso)
    return f"{value.day} {MONTH_NAMES[value.month - 1]} {value.year}"


def document_title(task: DeckTask) -> str:
    """The deck's own title (the PDF's Title, the PPTX's core properties)."""
    return f"Business review · {task.display_name} · {period(task)}"


def period(task: DeckTask) -> str:
    return f"{day(task.start_date)} – {day(task.end_date)}"


def footer(task: DeckTask) -> str:
    """The line at the foot of every slide but the title."""
    return f"{task.display_name} · business review · {period(task)}"


def slides_for(task: DeckTask) -> list[Slide]:
    """Title, the summary of key figures (when the pack has any, or a chart is missing), then a slide
    per chart in pack order."""
    summary_period, figures = headlines(task)
    missing = [chart.spec.title for chart in task.charts if not chart.available]
    shown_missing = missing and task.partial is not PartialDecks.OMIT  # omitted: the user chose not to say
    note = (f"Not available for this period: {', '.join(missing)}.",) if shown_missing else ()
    slides = [Slide("Business review", subtitle=task.display_name, paragraph=period(task),
                    lines=(f"Generated {day(task.generated_on)}",), kind=SlideKind.TITLE)]
    if figures or note:  # a pack without key figures has nothing to glance at: no empty page
        slides.append(Slide("At a glance", subtitle=_compared(summary_period, figures), headlines=tuple(figures),
                            lines=note, kind=SlideKind.SUMMARY))
    for chart in task.charts:
        if chart.data is None or chart.png is None:
            if task.partial is not PartialDecks.OMIT:
                slides.append(Slide(chart.spec.title, missing=NOT_AVAILABLE, chart_id=chart.spec.id))
            continue
        shown = shown_data(chart.spec, chart.data, task.start_date, task.end_date)
        slides.append(Slide(chart.spec.title, paragraph=paragraphs.write(chart.spec, shown), png=chart.png,
                            chart_id=chart.spec.id))
    return slides


def _compared(summary: Period, figures: list[Headline]) -> str:
    if any(figure.comparison for figure in figures):
        return f"{summary.name}, compared with {summary.previous_name}"
    return summary.name


# -- PDF layout (points; the page is 960 x 540) -----------------------------------------------------------
MARGIN = 48.0
TILE_TOP, TILE_H, TILE_GAP = 130.0, 220.0, 16.0  # the summary's key-figure tiles (top: from the page's top)
# Where a chart sits on its slide, in inches from the top left: the same in the PDF and the PPTX,
# 16:9, centred. The render worker draws each chart at this size, so a font size in the chart
# is the size on the slide (tests/test_slide_charts.py).
CHART_PLACE_IN = (160 / 72, 68 / 72, 640 / 72, 360 / 72)  # left, top, width, height
CHART_BOX = (CHART_PLACE_IN[0] * 72, PAGE_H - (CHART_PLACE_IN[1] + CHART_PLACE_IN[3]) * 72,
             CHART_PLACE_IN[2] * 72, CHART_PLACE_IN[3] * 72)  # PDF points: x, y from the bottom, width, height


def summary_grid(count: int, width: float) -> tuple[int, float]:
    """Key figures per row and each tile's width: four to a row at most, rows as even as can be."""
    rows = max(1, -(-count // 4))
    per_row = -(-count // rows) if count else 1
    return per_row, (width - TILE_GAP * (per_row - 1)) / per_row


def fitted_size(text: str, size: float, width: float, bold: bool = True) -> float:
    """The largest font size up to `size` at which `text` fits in `width` points."""
    while size > 12 and text_width(text, size, bold) > width:
        size -= 1
    return size

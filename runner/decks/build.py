"""One merchant's deck: what each slide says, laid out as a PDF and as a PPTX.

Runs in a render worker (the render stage hands decks to the same pool as charts). The slides
are: a title slide, one per chart in pack order (title, chart, paragraph; for a missing chart
"not available", or no slide with partial_decks=omit), and a summary of the key figures.
"""

from __future__ import annotations

import calendar
import hashlib
import time
from dataclasses import dataclass
from datetime import date

from runner.decks import paragraphs
from runner.decks.pdf import PAGE_H, PAGE_W, Canvas, document, png_image, text_width, wrap
from runner.decks.summary import Headline, headlines
from runner.errors import ChartError, ErrorType
from runner.figures import Period
from runner.jobs import BuiltDeck, DeckDocument, DeckTask
from runner.kinds.window import shown_data
from runner.status import PartialDecks

INK = (0.10, 0.10, 0.10)
MUTED = (0.40, 0.40, 0.40)
ACCENT = (0.106, 0.310, 0.447)  # the charts' first colour
PANEL = (0.95, 0.95, 0.95)
# In place of a chart that failed. Why it failed is for the report and the log, never the merchant.
NOT_AVAILABLE = "Not available for this period"


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
    kind: str = "chart"  # "title", "chart" or "summary"


def day(iso: str) -> str:
    value = date.fromisoformat(iso)
    return f"{value.day} {calendar.month_abbr[value.month]} {value.year}"


def document_title(task: DeckTask) -> str:
    """The deck's own title (the PDF's Title, the PPTX's core properties)."""
    return f"Business review · {task.display_name} · {period(task)}"


def period(task: DeckTask) -> str:
    return f"{day(task.start_date)} – {day(task.end_date)}"


def slides_for(task: DeckTask) -> list[Slide]:
    """Title, the summary of key figures, then a slide per chart in pack order."""
    summary_period, figures = headlines(task)
    missing = [chart.spec.title for chart in task.charts if not chart.available]
    shown_missing = missing and task.partial is not PartialDecks.OMIT  # omitted: the user chose not to say
    note = (f"Not available for this period: {', '.join(missing)}.",) if shown_missing else ()
    slides = [Slide("Business review", subtitle=task.display_name, paragraph=period(task),
                    lines=(f"Generated {day(task.generated_on)}",), kind="title"),
              Slide("At a glance", subtitle=_compared(summary_period, figures), headlines=tuple(figures),
                    lines=note, kind="summary")]
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


def _footer(page: Canvas, task: DeckTask, number: int, total: int) -> None:
    page.rect(0, PAGE_H - 6, PAGE_W, 6, ACCENT)
    page.text(MARGIN, 18, f"{task.display_name} · business review · {period(task)}", 9, color=MUTED)
    page.text(PAGE_W - MARGIN, 18, f"{number} / {total}", 9, color=MUTED, align="right")


def _pdf_page(slide: Slide, task: DeckTask, number: int, total: int) -> Canvas:
    page = Canvas()
    width = PAGE_W - 2 * MARGIN
    if slide.kind == "title":
        page.rect(0, 0, 18, PAGE_H, ACCENT)
        page.text(MARGIN + 20, 330, slide.title, 22, color=MUTED)
        page.paragraph(MARGIN + 20, 280, slide.subtitle, 40, width - 40, 2, bold=True, color=ACCENT)
        page.text(MARGIN + 20, 200, slide.paragraph, 20, color=INK)
        page.text(MARGIN + 20, 170, slide.lines[0], 12, color=MUTED)
        return page
    _footer(page, task, number, total)
    page.paragraph(MARGIN, PAGE_H - 50, slide.title, 26, width, 1, bold=True, color=ACCENT)
    if slide.kind == "summary":
        _pdf_summary(page, slide)
        return page
    x, y, w, h = CHART_BOX
    if slide.png is not None:
        page.image(png_image(slide.png), x, y, w, h)
    else:
        page.rect(x, y, w, h, PANEL)
        lines = wrap(slide.missing or "", 15, w - 60)[:4]
        for i, line in enumerate(lines):
            page.text(x + w / 2, y + h / 2 + 10 - 20 * i, line, 15, color=MUTED, align="center")
    page.paragraph(MARGIN, 90, slide.paragraph, 13, width, 4)
    return page


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


def _pdf_summary(page: Canvas, slide: Slide) -> None:
    width = PAGE_W - 2 * MARGIN
    page.text(MARGIN, PAGE_H - 76, slide.subtitle, 14, color=MUTED)
    per_row, tile = summary_grid(len(slide.headlines), width)
    for i, figure in enumerate(slide.headlines):
        row, column = divmod(i, per_row)
        x, top = MARGIN + column * (tile + TILE_GAP), PAGE_H - TILE_TOP - row * (TILE_H + TILE_GAP)
        page.rect(x, top - TILE_H, tile, TILE_H, PANEL)
        page.rect(x, top - TILE_H, 5, TILE_H, ACCENT)
        page.paragraph(x + 20, top - 34, figure.label, 16, tile - 36, 2, color=MUTED)
        page.text(x + 20, top - 120, figure.value, fitted_size(figure.value, 44, tile - 36), bold=True, color=ACCENT)
        page.paragraph(x + 20, top - 160, figure.comparison, 15, tile - 36, 3, color=INK)
    for line in slide.lines:
        page.paragraph(MARGIN, 70, line, 13, width, 2, color=MUTED)


def pdf_deck(slides: list[Slide], task: DeckTask) -> bytes:
    pages = [_pdf_page(slide, task, i, len(slides)) for i, slide in enumerate(slides, 1)]
    return document(pages, document_title(task))


def build_deck(task: DeckTask) -> BuiltDeck:
    """Every asked-for format of one merchant's deck; a failure is a deck_error."""
    from runner.decks.powerpoint import pptx_deck

    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        slides = slides_for(task)
        builders = {"pdf": pdf_deck, "pptx": pptx_deck}
        contents = [(fmt, builders[fmt](slides, task)) for fmt in task.formats]
    except ChartError:
        raise
    except Exception as exc:
        raise ChartError(ErrorType.DECK_ERROR, f"{task.merchant}: {type(exc).__name__}: {exc}"[:300]) from None
    return BuiltDeck(
        documents=tuple(DeckDocument(fmt, content, hashlib.sha256(content).hexdigest()) for fmt, content in contents),
        slides=len(slides),
        build_ms=round((time.perf_counter() - started) * 1000, 1),
        cpu_ms=round((time.process_time() - cpu_started) * 1000, 1),
    )

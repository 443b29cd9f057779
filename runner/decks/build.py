"""One merchant's deck: what each slide says, laid out as a PDF and as a PPTX.

Runs in a render worker (the render stage hands decks to the same pool as charts). The slides
are: a title slide, one per chart in pack order (title, chart, paragraph; or the reason the
chart is missing), and a summary of the key figures.
"""

from __future__ import annotations

import calendar
import hashlib
import time
from dataclasses import dataclass
from datetime import date

from runner.decks import paragraphs
from runner.decks.pdf import PAGE_H, PAGE_W, Canvas, document, png_image, wrap
from runner.errors import ChartError, ErrorType
from runner.jobs import BuiltDeck, DeckDocument, DeckTask

INK = (0.10, 0.10, 0.10)
MUTED = (0.40, 0.40, 0.40)
ACCENT = (0.106, 0.310, 0.447)  # the charts' first colour
PANEL = (0.95, 0.95, 0.95)


@dataclass(frozen=True)
class Slide:
    title: str
    subtitle: str = ""
    paragraph: str = ""
    png: bytes | None = None
    missing: str | None = None  # "Data unavailable: <reason>", in place of the chart
    lines: tuple[str, ...] = ()  # the summary's key figures
    kind: str = "chart"  # "title", "chart" or "summary"


def day(iso: str) -> str:
    value = date.fromisoformat(iso)
    return f"{value.day} {calendar.month_abbr[value.month]} {value.year}"


def period(task: DeckTask) -> str:
    return f"{day(task.start_date)} – {day(task.end_date)}"


def slides_for(task: DeckTask) -> list[Slide]:
    slides = [Slide("Business review", subtitle=task.merchant, paragraph=period(task),
                    lines=(f"Generated {day(task.generated_on)}",), kind="title")]
    figures = []
    for chart in task.charts:
        if chart.data is None or chart.png is None:
            slides.append(Slide(chart.spec.title, missing=f"Data unavailable: {chart.error or 'no data'}"))
            continue
        text = paragraphs.write(chart.spec, chart.data)
        slides.append(Slide(chart.spec.title, paragraph=chart.data.paragraph or text.paragraph, png=chart.png))
        figures.append(text.headline)
    missing = sum(1 for chart in task.charts if chart.png is None)
    if missing:
        figures.append(f"{missing} of {len(task.charts)} charts had no data: see their slides.")
    slides.append(Slide("Key figures", subtitle=period(task), lines=tuple(figures), kind="summary"))
    return slides


# -- PDF layout (points; the page is 960 x 540) -----------------------------------------------------------
MARGIN = 48.0
CHART_BOX = (160.0, 112.0, 640.0, 360.0)  # x, y, width, height: 16:9, like the PNG


def _footer(page: Canvas, task: DeckTask, number: int, total: int) -> None:
    page.rect(0, PAGE_H - 6, PAGE_W, 6, ACCENT)
    page.text(MARGIN, 18, f"{task.merchant} · business review · {period(task)}", 9, color=MUTED)
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
        page.text(MARGIN, PAGE_H - 76, slide.subtitle, 13, color=MUTED)
        top = PAGE_H - 130
        for line in slide.lines:
            page.rect(MARGIN, top + 2, 5, 5, ACCENT)
            top = page.paragraph(MARGIN + 16, top, line, 14, width - 16, 2) - 8
            if top < 60:
                break
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


def pdf_deck(slides: list[Slide], task: DeckTask) -> bytes:
    pages = [_pdf_page(slide, task, i, len(slides)) for i, slide in enumerate(slides, 1)]
    return document(pages, f"Business review · {task.merchant} · {period(task)}")


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

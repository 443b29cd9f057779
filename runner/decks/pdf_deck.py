"""A deck's slides as PDF pages (drawn with runner.decks.pdf), and the characters of its text no
font has (missing_glyphs: the run warns of them, runner.fonts.GlyphReport)."""

from __future__ import annotations

from runner.decks.pdf import PAGE_H, PAGE_W, Canvas, DocumentInfo, document, png_image, wrap
from runner.decks.pdf_font import missing
from runner.decks.slides import (
    ACCENT,
    CHART_BOX,
    INK,
    MARGIN,
    MUTED,
    PANEL,
    TILE_GAP,
    TILE_H,
    TILE_TOP,
    Slide,
    SlideKind,
    document_title,
    fitted_size,
    footer,
    period,
    summary_grid,
)
from runner.fonts import Medium, MissingGlyphs, missing_glyphs
from runner.records import DeckTask


def pdf_deck(slides: list[Slide], task: DeckTask) -> bytes:
    pages = [_pdf_page(slide, task, i, len(slides)) for i, slide in enumerate(slides, 1)]
    # The same title, author, subject and moment as the PPTX's properties (runner.decks.pptx_document).
    return document(pages, DocumentInfo(document_title(task), task.author, period(task), task.made))


def pdf_missing_glyphs(slides: list[Slide], task: DeckTask) -> tuple[MissingGlyphs, ...]:
    """The characters of the PDF's text no font has: per chart slide, and for the deck's own text."""
    own = missing(footer(task), False)
    found: list[MissingGlyphs] = []
    for slide in slides:
        texts = [slide.title, slide.subtitle, slide.paragraph, slide.missing or "", *slide.lines,
                 *(text for figure in slide.headlines for text in (figure.label, figure.value, figure.comparison))]
        chars = set().union(*(missing(text, False) for text in texts))
        if slide.chart_id:
            found += missing_glyphs(chars, Medium.PDF, task.merchant, slide.chart_id)
        else:
            own |= chars
    return (*missing_glyphs(own, Medium.PDF, task.merchant), *found)


def _footer(page: Canvas, task: DeckTask, number: int, total: int) -> None:
    page.rect(0, PAGE_H - 6, PAGE_W, 6, ACCENT)
    page.text(MARGIN, 18, footer(task), 9, color=MUTED)
    page.text(PAGE_W - MARGIN, 18, f"{number} / {total}", 9, color=MUTED, align="right")


def _pdf_page(slide: Slide, task: DeckTask, number: int, total: int) -> Canvas:
    page = Canvas()
    width = PAGE_W - 2 * MARGIN
    if slide.kind is SlideKind.TITLE:
        page.rect(0, 0, 18, PAGE_H, ACCENT)
        page.text(MARGIN + 20, 330, slide.title, 22, color=MUTED)
        page.paragraph(MARGIN + 20, 280, slide.subtitle, 40, width - 40, 2, bold=True, color=ACCENT)
        page.text(MARGIN + 20, 200, slide.paragraph, 20, color=INK)
        page.text(MARGIN + 20, 170, slide.lines[0], 12, color=MUTED)
        return page
    _footer(page, task, number, total)
    page.paragraph(MARGIN, PAGE_H - 50, slide.title, 26, width, 1, bold=True, color=ACCENT)
    if slide.kind is SlideKind.SUMMARY:
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

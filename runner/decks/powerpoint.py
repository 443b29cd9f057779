"""The deck as a PPTX (python-pptx): the built-in 16:9 layout, or a user's template filled in.

The template's placeholders (`{{title}}`, `{{chart}}`, `{{paragraph}}` on chart slides; `{{merchant}}`,
`{{period}}`, the key figures `{{kpi_<figure_id>}}` and `{{kpi_<figure_id>_change}}` anywhere) and how
they are filled: runner.decks.template.
"""

from __future__ import annotations

import io
from copy import deepcopy
from typing import Any

from pptx import Presentation
from pptx.dml.color import RGBColor
from pptx.enum.text import MSO_ANCHOR, MSO_AUTO_SIZE
from pptx.oxml.ns import qn
from pptx.util import Inches, Pt

from runner.decks.pdf import PAGE_W, wrap
from runner.decks.pptx_document import finish_document
from runner.decks.slides import (
    ACCENT,
    CHART_PLACE_IN,
    INK,
    MARGIN,
    MUTED,
    PANEL,
    TILE_GAP,
    TILE_H,
    TILE_TOP,
    Slide,
    SlideKind,
    fitted_size,
    footer,
    summary_grid,
)
from runner.decks.template import check_template as check_template  # run.py and rerun.py import it here
from runner.decks.template import fill_template
from runner.fonts import FAMILY  # the text's typeface, named: a PPTX cannot carry it (runner.fonts says why)
from runner.records import DeckTask

_TITLE_ONLY = 5  # python-pptx's starting deck's "Title Only" layout: a title placeholder and nothing else
_SLIDE_NUMBER_FIELD = "{B6F15528-21DE-4FAA-801E-634DDDAF4B2B}"  # a field's id (any GUID; the same on every slide)


def _rgb(color: tuple[float, float, float]) -> RGBColor:
    return RGBColor(*(round(c * 255) for c in color))


def _run(paragraph: Any, text: str, size: float, color: tuple[float, float, float], bold: bool = False) -> Any:
    run = paragraph.add_run()
    run.text = text
    run.font.size, run.font.bold, run.font.color.rgb, run.font.name = Pt(size), bold, _rgb(color), FAMILY
    return run


def _text(slide: Any, left: float, top: float, width: float, height: float, text: str, size: float,
          color: tuple[float, float, float] = INK, bold: bool = False, align: str = "left", margins: bool = True,
          shape: Any = None) -> Any:
    """A text box (or `shape`, a placeholder, placed and set the same way) holding one paragraph."""
    if shape is None:
        shape = slide.shapes.add_textbox(Inches(left), Inches(top), Inches(width), Inches(height))
    else:  # a placeholder: sized, anchored and fitted as a text box, not as its layout says
        shape.left, shape.top, shape.width, shape.height = Inches(left), Inches(top), Inches(width), Inches(height)
        shape.text_frame.auto_size, shape.text_frame.vertical_anchor = MSO_AUTO_SIZE.NONE, MSO_ANCHOR.TOP
    frame = shape.text_frame
    frame.word_wrap = True
    if not margins:  # the box's whole width for the text (a text box keeps 0.1 in each side by default)
        frame.margin_left = frame.margin_right = 0
    paragraph = frame.paragraphs[0]
    paragraph.alignment = {"left": 1, "center": 2, "right": 3}[align]
    _run(paragraph, text, size, color, bold)
    return frame


def _title(slide: Any, left: float, top: float, width: float, height: float, text: str, size: float,
           color: tuple[float, float, float], bold: bool = False) -> None:
    """The slide's title in its title placeholder, which outlines, screen readers and PowerPoint's
    own tools take for the title; placed and set as the rest of the slide's text."""
    _text(slide, left, top, width, height, text, size, color, bold, shape=slide.shapes.title)


def _bullets(slide: Any, left: float, top: float, width: float, height: float, lines: tuple[str, ...],
             size: float, color: tuple[float, float, float]) -> None:
    """One paragraph per line, each with a real bullet: the mark is the paragraph's (a:buChar), drawn
    by the viewer in the hanging indent, not a character typed into the text."""
    frame = slide.shapes.add_textbox(Inches(left), Inches(top), Inches(width), Inches(height)).text_frame
    frame.word_wrap = True
    indent = Pt(size * 1.2)
    for i, line in enumerate(lines):
        paragraph = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
        properties = paragraph._p.get_or_add_pPr()  # python-pptx has no bullets
        properties.set("marL", str(indent))
        properties.set("indent", str(-indent))
        _child(properties, "a:buFont", typeface=FAMILY)
        _child(properties, "a:buChar", char="•")
        _run(paragraph, _fitted(line, size, width - indent.inches - 0.2, 2), size, color)


def _child(parent: Any, tag: str, **attributes: str) -> Any:
    """A new last child of an element of the slide's XML, for what python-pptx cannot write."""
    child = parent.makeelement(qn(tag), attributes)
    parent.append(child)
    return child


def _footer(slide: Any, task: DeckTask, number: int, total: int) -> None:
    """The line at the slide's foot, and its number as a field: the viewer writes the slide's own
    number, also once slides are moved or removed (the total stays as built)."""
    _text(slide, 0.67, 7.05, 9.0, 0.3, footer(task), 9, MUTED)
    frame = _text(slide, 11.0, 7.05, 1.67, 0.3, f" / {total}", 9, MUTED, align="right")
    run = frame.paragraphs[0].runs[0]._r
    field = run.makeelement(qn("a:fld"), {"id": _SLIDE_NUMBER_FIELD, "type": "slidenum"})
    field.append(deepcopy(run.rPr))  # set as the text beside it
    _child(field, "a:t").text = str(number)  # what a viewer that does not update fields shows
    run.addprevious(field)


def _fitted(text: str, size: float, width_in: float, lines: int) -> str:
    """Text cut (with an ellipsis) to the lines a box can show, measured in DejaVu Sans, the font the
    text names (pdf.wrap); a viewer without it substitutes a sans-serif that is mostly narrower."""
    wrapped = wrap(text, size, width_in * 72)
    return text if len(wrapped) <= lines else " ".join(wrapped[:lines])[:-2].rstrip() + " …"


def _box(slide: Any, left: float, top: float, width: float, height: float,
         color: tuple[float, float, float]) -> None:
    shape = slide.shapes.add_shape(1, Inches(left), Inches(top), Inches(width), Inches(height))
    shape.fill.solid()
    shape.fill.fore_color.rgb = _rgb(color)
    shape.line.fill.background()


def _summary(slide: Any, spec: Slide) -> None:
    """The key figures as tiles, laid out as on the PDF's page (its points / 72)."""
    _text(slide, 0.67, 0.95, 12.0, 0.4, spec.subtitle, 14, MUTED)
    per_row, tile = summary_grid(len(spec.headlines), PAGE_W - 2 * MARGIN)
    for i, figure in enumerate(spec.headlines):
        row, column = divmod(i, per_row)
        left, top = (MARGIN + column * (tile + TILE_GAP)) / 72, (TILE_TOP + row * (TILE_H + TILE_GAP)) / 72
        width, inner = tile / 72, (tile - 36) / 72
        _box(slide, left, top, width, TILE_H / 72, PANEL)
        _box(slide, left, top, 5 / 72, TILE_H / 72, ACCENT)
        _text(slide, left + 0.2, top + 0.2, inner + 0.1, 0.7, _fitted(figure.label, 16, inner, 2), 16, MUTED)
        # Measured in DejaVu Sans, the font named; with a tenth to spare, the number stays on one line
        # also where the viewer sets it a little wider (the stand-ins for DejaVu Sans are mostly narrower).
        _text(slide, left + 0.2, top + 1.0, inner + 0.1, 0.8, figure.value,
              fitted_size(figure.value, 44, (tile - 36) / 1.1), ACCENT, bold=True, margins=False)
        _text(slide, left + 0.2, top + 1.95, inner + 0.1, 1.0, _fitted(figure.comparison, 15, inner, 3), 15)
    _bullets(slide, 0.67, 6.3, 12.0, 0.65, spec.lines, 13, MUTED)  # what the figures leave out


def _builtin(slides: list[Slide], task: DeckTask) -> Any:
    deck = Presentation()
    deck.slide_width, deck.slide_height = Inches(13.333), Inches(7.5)
    title_only = deck.slide_layouts[_TITLE_ONLY]
    for number, spec in enumerate(slides, 1):
        slide = deck.slides.add_slide(title_only)
        title = spec.kind is SlideKind.TITLE
        _box(slide, 0, 0, 0.25 if title else 13.333, 7.5 if title else 0.08, ACCENT)  # a bar down the left, or across
        if title:
            _title(slide, 0.9, 2.2, 11.5, 0.6, spec.title, 22, MUTED)
            _text(slide, 0.9, 2.8, 11.5, 1.2, _fitted(spec.subtitle, 40, 11.5, 1), 40, ACCENT, bold=True)
            _text(slide, 0.9, 4.1, 11.5, 0.5, spec.paragraph, 20)
            _text(slide, 0.9, 4.7, 11.5, 0.4, spec.lines[0], 12, MUTED)
            continue
        _title(slide, 0.67, 0.3, 12.0, 0.7, _fitted(spec.title, 26, 12.0, 1), 26, ACCENT, bold=True)
        _footer(slide, task, number, len(slides))
        if spec.kind is SlideKind.SUMMARY:
            _summary(slide, spec)
            continue
        left, top, width, height = CHART_PLACE_IN
        if spec.png is not None:
            slide.shapes.add_picture(io.BytesIO(spec.png), Inches(left), Inches(top), Inches(width), Inches(height))
        else:
            _box(slide, left, top, width, height, PANEL)
            _text(slide, left + 0.4, top + height / 2 - 0.4, width - 0.8, 1.0,
                  _fitted(spec.missing or "", 15, width - 0.8, 3), 15, MUTED, align="center")
        _text(slide, 0.67, top + height + 0.1, 12.0, 6.95 - (top + height + 0.1), _fitted(spec.paragraph, 13, 12.0, 4),
              13)  # ends above the footer
    return deck


def pptx_deck(slides: list[Slide], task: DeckTask) -> bytes:
    deck = fill_template(slides, task) if task.template else _builtin(slides, task)
    finish_document(deck, slides, task)
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()

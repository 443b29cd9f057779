"""The deck as a PPTX (python-pptx): the built-in 16:9 layout, or a user's template filled in.

A template carries the original system's placeholders: `{{title}}`, `{{paragraph}}` and
`{{chart}}` on each chart slide (matched to charts in slide order), or `{{<chart_id>_title}}`,
`{{<chart_id>_paragraph}}`, `{{<chart_id>_chart}}` (matched by id); `{{merchant}}` (the
merchant's name, its token when none is known), `{{merchant_token}}` and `{{period}}` anywhere.
The chart picture takes the `{{chart}}` shape's place, fitted inside it.
"""

from __future__ import annotations

import io
import re
import zipfile
from datetime import datetime
from typing import Any

from pptx import Presentation
from pptx.dml.color import RGBColor
from pptx.util import Emu, Inches, Pt

from runner.charts import ChartSpec
from runner.decks.pdf import PAGE_W, wrap
from runner.decks.slides import (
    ACCENT,
    CHART_PLACE_IN,
    INK,
    MARGIN,
    MUTED,
    NOT_AVAILABLE,
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
from runner.errors import UsageError
from runner.records import DeckTask

# Uncompressed: the 50 MB a template file may have, with room for XML that compresses well.
MAX_TEMPLATE_EXPANDED_BYTES = 250_000_000
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_-]+)\s*\}\}")
_ROLES = ("title", "paragraph", "chart")


def _rgb(color: tuple[float, float, float]) -> RGBColor:
    return RGBColor(*(round(c * 255) for c in color))


def _text(slide: Any, left: float, top: float, width: float, height: float, text: str, size: float,
          color: tuple[float, float, float] = INK, bold: bool = False, align: str = "left", margins: bool = True,
          ) -> None:
    frame = slide.shapes.add_textbox(Inches(left), Inches(top), Inches(width), Inches(height)).text_frame
    frame.word_wrap = True
    if not margins:  # the box's whole width for the text (a text box keeps 0.1 in each side by default)
        frame.margin_left = frame.margin_right = 0
    paragraph = frame.paragraphs[0]
    paragraph.alignment = {"left": 1, "center": 2, "right": 3}[align]
    run = paragraph.add_run()
    run.text = text
    run.font.size, run.font.bold, run.font.color.rgb = Pt(size), bold, _rgb(color)


def _fitted(text: str, size: float, width_in: float, lines: int) -> str:
    """Text cut (with an ellipsis) to the lines a box can show, measured in Helvetica, which is
    wider than PowerPoint's default Calibri: what fits here fits there."""
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
        # The viewer's font is not ours to choose (LibreOffice has no Calibri): sized for one a quarter
        # wider than Helvetica, the number fits on one line in the fonts that stand in for it.
        _text(slide, left + 0.2, top + 1.0, inner + 0.1, 0.8, figure.value,
              fitted_size(figure.value, 44, (tile - 36) / 1.3), ACCENT, bold=True, margins=False)
        _text(slide, left + 0.2, top + 1.95, inner + 0.1, 1.0, _fitted(figure.comparison, 15, inner, 3), 15)
    for line in spec.lines:
        _text(slide, 0.67, 6.3, 12.0, 0.6, _fitted(line, 13, 12.0, 2), 13, MUTED)


def _builtin(slides: list[Slide], task: DeckTask) -> Any:
    deck = Presentation()
    deck.slide_width, deck.slide_height = Inches(13.333), Inches(7.5)
    blank = deck.slide_layouts[6]
    for number, spec in enumerate(slides, 1):
        slide = deck.slides.add_slide(blank)
        title = spec.kind is SlideKind.TITLE
        _box(slide, 0, 0, 0.25 if title else 13.333, 7.5 if title else 0.08, ACCENT)  # a bar down the left, or across
        if title:
            _text(slide, 0.9, 2.2, 11.5, 0.6, spec.title, 22, MUTED)
            _text(slide, 0.9, 2.8, 11.5, 1.2, _fitted(spec.subtitle, 40, 11.5, 1), 40, ACCENT, bold=True)
            _text(slide, 0.9, 4.1, 11.5, 0.5, spec.paragraph, 20)
            _text(slide, 0.9, 4.7, 11.5, 0.4, spec.lines[0], 12, MUTED)
            continue
        _text(slide, 0.67, 0.3, 12.0, 0.7, _fitted(spec.title, 26, 12.0, 1), 26, ACCENT, bold=True)
        _text(slide, 0.67, 7.05, 9.0, 0.3, footer(task), 9, MUTED)
        _text(slide, 11.0, 7.05, 1.67, 0.3, f"{number} / {len(slides)}", 9, MUTED, align="right")
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


# -- templates --------------------------------------------------------------------------------------------
def _slide_text(slide: Any) -> str:
    return " ".join(shape.text_frame.text for shape in slide.shapes if shape.has_text_frame)


def _chart_slides(deck: Any, specs: tuple[ChartSpec, ...]) -> tuple[dict[str, Any], str]:
    """Each chart's slide in the template, and how they were matched ("id" or "order")."""
    by_id = {}
    for slide in deck.slides:
        for name in _PLACEHOLDER.findall(_slide_text(slide)):
            for spec in specs:
                if name in (f"{spec.id}_{role}" for role in _ROLES):
                    by_id[spec.id] = slide
    if by_id:
        return by_id, "id"
    ordered = [s for s in deck.slides if "chart" in _PLACEHOLDER.findall(_slide_text(s))]
    return dict(zip((spec.id for spec in specs), ordered, strict=False)), "order"


_CHUNK = 1 << 20  # decompressed a megabyte at a time, however much one compressed block holds


def _check_archive(content: bytes, where: str) -> None:
    """A PPTX is a zip: refuse one that is not, or whose members would expand past the bound,
    from the sizes in its directory before any member is read. Then every member is read through
    once, a megabyte at a time: reading stops at the size the directory gives and checks the
    CRC, so a member that lies about its size is refused here with bounded memory (a whole-member
    read, as python-pptx does, would first inflate everything its compressed bytes hold)."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = archive.infolist()
            expanded = sum(member.file_size for member in members)
            if expanded > MAX_TEMPLATE_EXPANDED_BYTES:
                raise UsageError(f"deck template {where} would expand to {expanded:,} bytes, over the "
                                 f"{MAX_TEMPLATE_EXPANDED_BYTES:,}-byte limit")
            for member in members:
                with archive.open(member) as stream:
                    while stream.read(_CHUNK):
                        pass
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise UsageError(f"deck template {where} is not a PowerPoint file: not a sound zip archive ({exc})") from None


def check_template(content: bytes, specs: tuple[ChartSpec, ...], where: str) -> None:
    """Refuse a template that cannot hold the pack: before any work, naming what is missing."""
    _check_archive(content, where)
    try:
        deck = Presentation(io.BytesIO(content))
    except Exception as exc:  # python-pptx raises several kinds for a file that is not a deck
        raise UsageError(f"deck template {where} is not a PowerPoint file: {type(exc).__name__}: {exc}") from None
    slides, how = _chart_slides(deck, specs)
    for spec in specs:
        slide = slides.get(spec.id)
        names = set(_PLACEHOLDER.findall(_slide_text(slide))) if slide is not None else set()
        for role in _ROLES:
            wanted = f"{spec.id}_{role}" if how == "id" else role
            if wanted not in names:
                hint = "" if how == "id" else f" (chart slides are matched in order: this is chart {spec.id!r})"
                raise UsageError(f"deck template {where} lacks the placeholder {{{{{wanted}}}}}{hint}")


def _replace_text(shape: Any, values: dict[str, str]) -> None:
    for paragraph in shape.text_frame.paragraphs:
        runs = paragraph.runs
        joined = "".join(run.text for run in runs)
        if not runs or not _PLACEHOLDER.search(joined):
            continue
        runs[0].text = _PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), joined)
        for run in runs[1:]:
            run.text = ""


def _fill_template(slides: list[Slide], task: DeckTask) -> Any:
    assert task.template is not None
    deck = Presentation(io.BytesIO(task.template))
    specs = tuple(chart.spec for chart in task.charts)
    chart_slides, how = _chart_slides(deck, specs)
    everywhere = {"merchant": task.display_name, "merchant_token": task.merchant, "period": period(task)}
    by_id = {slide.chart_id: slide for slide in slides if slide.kind is SlideKind.CHART}  # none for a chart left out
    for spec in specs:
        slide, content = chart_slides[spec.id], by_id.get(spec.id)
        prefix = f"{spec.id}_" if how == "id" else ""
        if content is None:  # left out (partial_decks=omit): its placeholders emptied, its slide dropped below
            for shape in slide.shapes:
                if shape.has_text_frame:
                    _replace_text(shape, {f"{prefix}{role}": "" for role in _ROLES})
            continue
        values = {**everywhere, f"{prefix}title": content.title, f"{prefix}paragraph": content.paragraph}
        for shape in list(slide.shapes):
            if not shape.has_text_frame:
                continue
            if f"{{{{{prefix}chart}}}}" not in shape.text_frame.text.replace(" ", ""):
                _replace_text(shape, values)
                continue
            if content.png is None:
                values[f"{prefix}chart"] = content.missing or NOT_AVAILABLE
                _replace_text(shape, values)
                continue
            left, top, width, height = shape.left, shape.top, shape.width, shape.height
            chart_w, chart_h = CHART_PLACE_IN[2:]  # fit the chart inside the shape, its proportions kept
            scale = min(width / chart_w, height / chart_h)
            w, h = int(chart_w * scale), int(chart_h * scale)
            slide.shapes.add_picture(io.BytesIO(content.png), Emu(left + (width - w) // 2),
                                     Emu(top + (height - h) // 2), Emu(w), Emu(h))
            shape._element.getparent().remove(shape._element)
    kept = {chart_slides[spec_id].part for spec_id in by_id}  # a slide shared with a shown chart stays
    for spec in specs:
        if spec.id not in by_id and chart_slides[spec.id].part not in kept:
            _drop_slide(deck, chart_slides[spec.id])
    for slide in deck.slides:
        for shape in slide.shapes:
            if shape.has_text_frame:
                _replace_text(shape, everywhere)
    return deck


def _drop_slide(deck: Any, slide: Any) -> None:
    ids = deck.slides._sldIdLst  # python-pptx has no public way to remove a slide
    for entry in list(ids):
        if deck.part.related_part(entry.rId) is slide.part:
            ids.remove(entry)
            deck.part.drop_rel(entry.rId)


def pptx_deck(slides: list[Slide], task: DeckTask) -> bytes:
    deck = _fill_template(slides, task) if task.template else _builtin(slides, task)
    properties = deck.core_properties  # python-pptx's default deck says it was written by its author in 2013
    properties.title = document_title(task)
    properties.author = properties.last_modified_by = "runner"
    properties.comments = properties.keywords = properties.subject = ""
    properties.created = properties.modified = datetime.fromisoformat(task.generated_on)
    properties.revision = 1
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()

"""A user's PowerPoint template filled in with one merchant's deck.

Chart slides carry `{{title}}`, `{{chart}}` and `{{paragraph}}`. A template with one such slide
repeats it for every chart, in pack order; with one per chart they are matched in order (slides
past the last chart are dropped). Or each chart's slide names it: `{{<chart_id>_title}}`,
`{{<chart_id>_chart}}`, `{{<chart_id>_paragraph}}` (slides naming a chart the run does not build
are dropped). The chart picture takes the place of the shape holding `{{chart}}` (a text box or
shape, in a group or not), fitted inside it; `{{title}}` and `{{paragraph}}` may also sit in a
table or the slide's notes.

Anywhere (slides, their notes, tables, groups, slide layouts and masters, e.g. a layout's footer):
`{{merchant}}` (the merchant's name, its token when none is known), `{{merchant_token}}`,
`{{period}}`, and the summary's key figures by the pack's figure ids: `{{kpi_<figure_id>}}` (the
figure as the summary slide shows it, "€98,828"; "Not available for this period" where it could
not be measured) and `{{kpi_<figure_id>_change}}` ("+33.8% vs Jan–Dec 2024"; empty where there is
nothing to compare with). The built-in packs' figures: sales, orders, aov, new_customer_orders.

A placeholder PowerPoint has split across runs of one paragraph is found all the same; its value
takes the formatting of the run the placeholder starts in. An unknown placeholder, one left
unclosed, a chart placeholder outside a chart slide, or chart slides that cannot hold the pack stop
the run before any work (check_template), naming the slide or layout. Every deck is built from the
template's bytes, parsed afresh, so its layouts and masters are that merchant's own copy.
"""

from __future__ import annotations

import copy
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pptx import Presentation
from pptx.enum.shapes import MSO_SHAPE_TYPE
from pptx.opc.constants import RELATIONSHIP_TYPE as RT
from pptx.opc.package import XmlPart
from pptx.oxml.ns import qn
from pptx.util import Emu

from runner.charts import ChartSpec
from runner.decks.placeholders import PLACEHOLDER, fill, placeholders, stretches
from runner.decks.slides import CHART_PLACE_IN, NOT_AVAILABLE, Slide, SlideKind, period
from runner.decks.summary import headlines
from runner.errors import UsageError
from runner.figures import KeyFigure
from runner.records import DeckTask

# Uncompressed: the 50 MB a template file may have, with room for XML that compresses well.
MAX_TEMPLATE_EXPANDED_BYTES = 250_000_000
_ROLES = ("title", "chart", "paragraph")
_GLOBALS = ("merchant", "merchant_token", "period")
# A slide copy relates to its own layout and notes; every other relationship (pictures, links) it shares.
_OWN_RELS = {RT.SLIDE_LAYOUT, RT.NOTES_SLIDE, RT.NOTES_MASTER, RT.SLIDE}


class Matching(StrEnum):
    REPEAT = "repeat"  # one chart slide, repeated for every chart
    ORDER = "order"  # one chart slide per chart, in pack order
    ID = "id"  # each chart's slide names it: {{<chart_id>_title}}


@dataclass(frozen=True)
class Plan:
    """Which template slide (its 0-based position) each chart of the run fills."""

    matching: Matching
    slides: dict[str, int]


# -- placeholders in runs ---------------------------------------------------------------------------------
def _slide_parts(slide: Any) -> list[Any]:
    """A slide's part and its notes' part: a chart slide's placeholders may be in either."""
    return [slide.part, *([slide.notes_slide.part] if slide.has_notes_slide else [])]


def _names(element: Any, label: str, where: str) -> set[str]:
    """The placeholders an element's text holds; one opened and never closed is refused."""
    found = set()
    for text in stretches(element):
        found.update(PLACEHOLDER.findall(text))
        rest = PLACEHOLDER.sub("", text)
        if "{{" in rest:
            start = rest.index("{{")
            raise UsageError(f"deck template {where}: {label} has {rest[start:start + 40]!r}, a placeholder "
                             "without its closing }}")
    return found


# -- the template's parts ---------------------------------------------------------------------------------
def _labelled_parts(deck: Any) -> dict[Any, str]:
    """Every XML part of the deck, named as a user sees it: slides and their notes, masters and
    layouts, then the rest (charts, the notes master) by their names in the package."""
    labels: dict[Any, str] = {}
    for number, slide in enumerate(deck.slides, 1):
        labels[slide.part] = f"slide {number}"
        if slide.has_notes_slide:
            labels[slide.notes_slide.part] = f"slide {number}'s notes"
    for number, master in enumerate(deck.slide_masters, 1):
        labels[master.part] = f"slide master {number}"
        for layout in master.slide_layouts:
            labels.setdefault(layout.part, f"layout {layout.name!r}")
    for part in deck.part.package.iter_parts():
        if isinstance(part, XmlPart):
            labels.setdefault(part, str(part.partname))
    return labels


def _text_shapes(shapes: Any) -> Iterator[Any]:
    """The shapes with text, those in groups too: where a chart picture can take a shape's place."""
    for shape in shapes:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _text_shapes(shape.shapes)
        elif shape.has_text_frame:
            yield shape


def _role(name: str) -> tuple[str, str] | None:
    """(chart id, role) of a chart slide's placeholder; the id is "" for one matched in order."""
    if name in _ROLES:
        return "", name
    head, _, role = name.rpartition("_")
    return (head, role) if head and role in _ROLES else None


def _kpi_names(figures: tuple[KeyFigure, ...]) -> set[str]:
    return {name for figure in figures for name in (f"kpi_{figure.id}", f"kpi_{figure.id}_change")}


def _plan(deck: Any, specs: tuple[ChartSpec, ...], figures: tuple[KeyFigure, ...], where: str) -> Plan:
    """Where each chart goes, from the placeholders the template holds; anything that cannot work refused."""
    known = {*_GLOBALS, *_kpi_names(figures)}
    slide_parts = {part: i for i, slide in enumerate(deck.slides) for part in _slide_parts(slide)}
    roles: dict[int, set[tuple[str, str]]] = {}  # a chart slide's (chart id, role) placeholders
    for part, label in _labelled_parts(deck).items():
        for name in sorted(_names(part._element, label, where) - known):
            role = _role(name)
            if role is None:
                figure_ids = ", ".join(figure.id for figure in figures) or "none in this pack"
                raise UsageError(
                    f"deck template {where}: {label} has the unknown placeholder {{{{{name}}}}}; known are "
                    "{{merchant}}, {{merchant_token}}, {{period}}, {{kpi_<figure>}} and {{kpi_<figure>_change}} "
                    f"(figures: {figure_ids}), and on chart slides {{{{title}}}}, {{{{chart}}}}, {{{{paragraph}}}} "
                    "or {{<chart_id>_title}}…")
            if part not in slide_parts:
                raise UsageError(f"deck template {where}: {label} has {{{{{name}}}}}, which belongs on a chart "
                                 "slide (a layout or master is shared by every slide)")
            roles.setdefault(slide_parts[part], set()).add(role)
    in_shapes = {i: {name for shape in _text_shapes(slide.shapes)
                     for name in _names(shape._element, f"slide {i + 1}", where)}
                 for i, slide in enumerate(deck.slides) if i in roles}
    ordered = sorted(i for i, found in roles.items() if any(chart == "" for chart, _ in found))
    by_id = sorted(i for i, found in roles.items() if any(chart for chart, _ in found))
    if ordered and by_id:
        raise UsageError(f"deck template {where}: slide {ordered[0] + 1} has chart placeholders matched in order "
                         f"({{{{title}}}}…) and slide {by_id[0] + 1} ones matched by id ({{{{<chart_id>_title}}}}…): "
                         "use one way")

    def check(index: int, chart: str) -> None:
        prefix = f"{chart}_" if chart else ""
        for role in _ROLES:
            if (chart, role) not in roles[index]:
                raise UsageError(f"deck template {where}: slide {index + 1} lacks the placeholder "
                                 f"{{{{{prefix}{role}}}}} (a chart slide needs {{{{{prefix}title}}}}, "
                                 f"{{{{{prefix}chart}}}} and {{{{{prefix}paragraph}}}})")
        if f"{prefix}chart" not in in_shapes[index]:
            raise UsageError(f"deck template {where}: slide {index + 1} has {{{{{prefix}chart}}}} in a table or "
                             "its notes: the chart takes the place of a text box or shape holding it")

    if by_id:
        slides = {}
        for spec in specs:
            holding = [i for i in by_id if any(chart == spec.id for chart, _ in roles[i])]
            if not holding:
                raise UsageError(f"deck template {where} has no slide for chart {spec.id!r} (its chart slides are "
                                 f"matched by id: give one {{{{{spec.id}_title}}}}, {{{{{spec.id}_chart}}}} and "
                                 f"{{{{{spec.id}_paragraph}}}})")
            if len(holding) > 1:
                raise UsageError(f"deck template {where}: chart {spec.id!r} has placeholders on slides "
                                 f"{holding[0] + 1} and {holding[1] + 1}; give each chart one slide")
            check(holding[0], spec.id)
            slides[spec.id] = holding[0]
        return Plan(Matching.ID, slides)
    if not ordered:
        raise UsageError(f"deck template {where} has no chart slide: give a slide with {{{{title}}}}, {{{{chart}}}} "
                         "and {{paragraph}} (repeated for every chart), or one per chart")
    for index in ordered:
        check(index, "")
    if len(ordered) == 1:
        return Plan(Matching.REPEAT, {spec.id: ordered[0] for spec in specs})
    if len(ordered) < len(specs):
        raise UsageError(f"deck template {where} has {len(ordered)} chart slides for {len(specs)} charts: chart "
                         f"slides are matched in order, one per chart; give one chart slide (repeated for every "
                         f"chart) or {len(specs)}, or name each chart's slide by id ({{{{<chart_id>_title}}}}…)")
    return Plan(Matching.ORDER, {spec.id: index for spec, index in zip(specs, ordered, strict=False)})


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


def check_template(content: bytes, specs: tuple[ChartSpec, ...], where: str,
                   figures: tuple[KeyFigure, ...] = ()) -> None:
    """Refuse a template that cannot hold the pack: before any work, naming what is wrong and where."""
    _check_archive(content, where)
    try:
        deck = Presentation(io.BytesIO(content))
    except Exception as exc:  # python-pptx raises several kinds for a file that is not a deck
        raise UsageError(f"deck template {where} is not a PowerPoint file: {type(exc).__name__}: {exc}") from None
    _plan(deck, specs, figures, where)


# -- filling ------------------------------------------------------------------------------------------------
def _copy_content(source: Any, target: Any) -> None:
    """The source part's XML into the target part, its relationships (pictures, links) related anew."""
    renamed = {}
    for rId, rel in source.rels.items():
        if rel.reltype not in _OWN_RELS:
            renamed[rId] = target.relate_to(rel.target_ref if rel.is_external else rel.target_part, rel.reltype,
                                            rel.is_external)
    element = copy.deepcopy(source._element)
    relationship = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
    for node in element.iter():
        for key, value in node.attrib.items():
            if key.startswith(relationship) and value in renamed:
                node.set(key, renamed[value])
    # python-pptx's shape collections hold the target's shape tree: that element stays, with the copy's content.
    kept, copied = (root.find(qn("p:cSld")).find(qn("p:spTree")) for root in (target._element, element))
    kept[:] = list(copied)
    copied.getparent().replace(copied, kept)
    target._element.attrib.clear()
    target._element.attrib.update(element.attrib)
    target._element[:] = list(element)


def _duplicate(deck: Any, slide: Any, after: Any) -> Any:
    """A copy of the slide (shapes, pictures, notes) placed after the slide `after`."""
    duplicate = deck.slides.add_slide(slide.slide_layout)
    _copy_content(slide.part, duplicate.part)
    if slide.has_notes_slide:
        _copy_content(slide.notes_slide.part, duplicate.notes_slide.part)
    ids = deck.slides._sldIdLst  # python-pptx has no public way to move a slide
    entries = {deck.part.related_part(entry.rId): entry for entry in ids}
    entries[after.part].addnext(entries[duplicate.part])
    return duplicate


def _drop_slide(deck: Any, slide: Any) -> None:
    ids = deck.slides._sldIdLst  # python-pptx has no public way to remove a slide
    for entry in list(ids):
        if deck.part.related_part(entry.rId) is slide.part:
            ids.remove(entry)
            deck.part.drop_rel(entry.rId)


def _place_chart(slide: Any, shape: Any, png: bytes) -> None:
    """The chart in the shape's place, fitted inside it, proportions kept, at its depth (in front of
    what was behind the shape); in a group, in the group's own coordinates as the shape was."""
    chart_w, chart_h = CHART_PLACE_IN[2:]
    scale = min(shape.width / chart_w, shape.height / chart_h)
    w, h = int(chart_w * scale), int(chart_h * scale)
    picture = slide.shapes.add_picture(io.BytesIO(png), Emu(shape.left + (shape.width - w) // 2),
                                       Emu(shape.top + (shape.height - h) // 2), Emu(w), Emu(h))
    shape._element.addprevious(picture._element)  # moves it out of the slide's top level, into the group
    shape._element.getparent().remove(shape._element)


def _key_figures(task: DeckTask) -> dict[str, str]:
    """`kpi_<id>` and `kpi_<id>_change` for each of the pack's key figures, as the summary shows them."""
    shown = {headline.figure: headline for headline in headlines(task)[1]}
    values = {}
    for figure in task.figures:
        headline = shown.get(figure.id)
        values[f"kpi_{figure.id}"] = headline.value if headline else NOT_AVAILABLE
        values[f"kpi_{figure.id}_change"] = headline.comparison if headline else ""
    return values


def _fill_chart_slide(slide: Any, charts: list[tuple[str, Slide | None]], everywhere: dict[str, str]) -> None:
    """One chart slide's placeholders: each chart's on it (a chart left out: emptied), and any other
    chart's (one the run does not build) emptied."""
    parts = _slide_parts(slide)
    values = {name: "" for name in placeholders(parts) if _role(name)}
    for prefix, content in charts:
        if content is None:
            continue
        values.update({f"{prefix}title": content.title, f"{prefix}paragraph": content.paragraph,
                       f"{prefix}chart": "" if content.png else content.missing or NOT_AVAILABLE})
        if content.png is not None:
            for shape in list(_text_shapes(slide.shapes)):
                if f"{prefix}chart" in PLACEHOLDER.findall(shape.text_frame.text):
                    _place_chart(slide, shape, content.png)
    values.update(everywhere)
    for part in parts:
        fill(part._element, values)


def fill_template(slides: list[Slide], task: DeckTask) -> Any:
    """The template (task.template) filled in with this merchant's deck; a fresh copy of every part."""
    assert task.template is not None
    deck = Presentation(io.BytesIO(task.template))
    specs = tuple(chart.spec for chart in task.charts)
    plan = _plan(deck, specs, task.figures, "")
    template_slides = list(deck.slides)
    # Every chart slide, this run's or not: read before any is filled.
    every_chart_slide = [slide for slide in template_slides if any(map(_role, placeholders(_slide_parts(slide))))]
    content = {slide.chart_id: slide for slide in slides if slide.kind is SlideKind.CHART}  # none: left out
    everywhere = {"merchant": task.display_name, "merchant_token": task.merchant, "period": period(task),
                  **_key_figures(task)}
    chart_slides: list[tuple[Any, list[tuple[str, Slide | None]]]] = []  # each one's charts, with their prefix
    if plan.matching is Matching.REPEAT:
        shown = [spec.id for spec in specs if spec.id in content]
        original = previous = template_slides[plan.slides[specs[0].id]]
        for number, chart_id in enumerate(shown):  # copied before the original is filled
            previous = original if number == 0 else _duplicate(deck, original, previous)
            chart_slides.append((previous, [("", content[chart_id])]))
    else:
        charts_of: dict[int, list[tuple[str, Slide | None]]] = {}
        for spec in specs:
            prefix = f"{spec.id}_" if plan.matching is Matching.ID else ""
            charts_of.setdefault(plan.slides[spec.id], []).append((prefix, content.get(spec.id)))
        chart_slides = [(template_slides[index], charts) for index, charts in charts_of.items()]
    for slide, charts in chart_slides:
        _fill_chart_slide(slide, charts, everywhere)
    kept = {slide.part for slide, charts in chart_slides if any(c is not None for _, c in charts)}
    for slide in every_chart_slide:  # a chart slide with no chart shown, or none of this run's charts
        if slide.part not in kept:
            _drop_slide(deck, slide)
    filled = {part for slide, _ in chart_slides for part in _slide_parts(slide)}  # once: a value is never read again
    for part in _labelled_parts(deck):
        if part not in filled:
            fill(part._element, everywhere)
    return deck

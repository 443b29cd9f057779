"""A PPTX as a document one can send: its properties and its pictures' alt text, the same for the
built-in deck and a filled template (runner.decks.powerpoint calls `finish_document` last).

What the file says about itself is written anew. python-pptx's own starting package says it was
written in 2013 by the library's author, as a 4:3 "Microsoft Macintosh PowerPoint" show of no
slides with a thumbnail of an empty slide; a user's template brings its own author, dates,
keywords, slide titles ("{{title}}") and a thumbnail that shows its placeholders. None of that is
true of the deck, so nothing of it is kept: the core properties hold only the deck's title, the
author (the deck_author setting), the period as subject and the moment it was built; the extended
properties name the application and the slide count; the thumbnail (optional: viewers draw their
own) is dropped.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from pptx.opc.constants import RELATIONSHIP_TYPE as RT
from pptx.opc.package import Part
from pptx.oxml.ns import qn

from runner.decks.slides import Slide, SlideKind, document_title, period
from runner.records import DeckTask

APPLICATION = "runner"  # the extended properties' Application: the program that wrote the file
_EXTENDED = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
             '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties" '
             'xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes">'
             "<Application>{application}</Application><Slides>{slides}</Slides></Properties>")


def alt_text(slide: Slide) -> str:
    """A chart picture's alt text: the chart's title and its headline (the sentence the slide prints
    under it), so a reader who cannot see the picture is told what it shows."""
    return f"{slide.title}: {slide.paragraph}" if slide.paragraph else slide.title


def finish_document(deck: Any, slides: list[Slide], task: DeckTask) -> None:
    """Properties and alt text on a built or filled deck (a python-pptx Presentation), in place."""
    _core_properties(deck, task, task.made)
    _extended_properties(deck)
    _drop_thumbnail(deck)
    _alt_texts(deck, slides)


def _core_properties(deck: Any, task: DeckTask, now: datetime) -> None:
    properties = deck.core_properties
    element = properties._element  # python-pptx cannot remove a property: start from none at all
    for child in list(element):
        element.remove(child)
    properties.title = document_title(task)
    properties.subject = period(task)
    properties.author = properties.last_modified_by = task.author
    properties.revision = 1
    # python-pptx writes the clock's figures followed by "Z": they must be UTC's
    properties.created = properties.modified = now.astimezone(UTC)


def _extended_properties(deck: Any) -> None:
    package = deck.part.package
    try:
        part = package.part_related_by(RT.EXTENDED_PROPERTIES)
    except KeyError:  # optional in a package: a template without one gets none
        return
    if type(part) is Part:  # python-pptx keeps app.xml as plain bytes
        part.blob = _EXTENDED.format(application=APPLICATION, slides=len(deck.slides)).encode()


def _drop_thumbnail(deck: Any) -> None:
    package = deck.part.package
    for rel in list(package._rels.values()):  # python-pptx lists a package's relationships only privately
        if rel.reltype == RT.THUMBNAIL:
            package.drop_rel(rel.rId)


def _alt_texts(deck: Any, slides: list[Slide]) -> None:
    """Each chart picture is found by its image (the chart's PNG), wherever the layout or the template
    put it (in a group or a placeholder too); a picture of the template's own (a logo) keeps the alt
    text its author gave it."""
    charts: dict[str, Slide] = {}
    for spec in slides:
        if spec.kind is SlideKind.CHART and spec.png is not None:
            charts.setdefault(hashlib.sha1(spec.png).hexdigest(), spec)  # python-pptx's key of an image part
    for slide in deck.slides:
        for picture in slide.element.iter(qn("p:pic")):
            chart = charts.get(_image_sha1(slide, picture) or "")
            if chart is not None:
                properties = picture.find(f"{qn('p:nvPicPr')}/{qn('p:cNvPr')}")  # python-pptx has no alt text
                properties.set("descr", alt_text(chart))
                properties.set("title", chart.title)


def _image_sha1(slide: Any, picture: Any) -> str | None:
    """The SHA-1 of a picture's image, None for a picture linked from outside or not an image."""
    blip = picture.find(f"{qn('p:blipFill')}/{qn('a:blip')}")
    rid = blip.get(qn("r:embed")) if blip is not None else None
    if not rid or rid not in slide.part.rels:
        return None
    return getattr(slide.part.related_part(rid), "sha1", None)

"""The one typeface of the charts, the PDF and the PPTX, DejaVu Sans, and the machine's other
fonts for the characters it lacks; and the run's warning about characters no font covers.

DejaVu Sans is matplotlib's own default font and ships with it (mpl-data/fonts/ttf), so every
machine that renders has it, and its licence (Bitstream Vera's, DejaVu's changes in the public
domain; OS/2 fsType 0) allows embedding a subset of it in a PDF. A PPTX can only name a font, not
carry it (PowerPoint embeds fonts, python-pptx cannot): runner.decks.powerpoint names FAMILY, and a
viewer without DejaVu Sans substitutes its own sans-serif.

A character DejaVu lacks is drawn with the first of the machine's fonts that has it (a CJK font,
say; fallback_for). Private-use characters never are: what one means is the font's own
business, so another font's glyph for it would be a wrong one.

Imports matplotlib and fontTools only inside functions: the coordinator imports this module for
MissingGlyphs and GlyphReport and must stay light.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from loguru import logger

FAMILY = "DejaVu Sans"  # the charts', the PDF's and the PPTX's typeface
_FILES = {False: "DejaVuSans.ttf", True: "DejaVuSans-Bold.ttf"}
# Fonts matplotlib ships that are no fallback: its own default, a font of placeholder boxes, and
# fonts in TeX's or STIX's private encodings (their code points mean other characters).
_NO_FALLBACK = re.compile(r"^(DejaVu Sans|Last Resort.*|STIXNonUnicode|STIXSize.*|cm[a-z]+\d+)$")
_EXAMPLES = 5  # merchants named per character in the run's warning


@dataclass(frozen=True)
class Face:
    """One font's metrics, read once per process (face): what the PDF writer measures and embeds."""

    path: str
    number: int  # the font's place in a .ttc collection
    postscript_name: str
    units_per_em: int
    glyphs: dict[int, int]  # code point -> glyph id
    advances: tuple[int, ...]  # by glyph id, in font units
    ascent: int
    descent: int
    bbox: tuple[int, int, int, int]
    italic_angle: float
    truetype: bool  # TrueType outlines ('glyf'): embeddable as a CIDFontType2

    def glyph(self, char: str) -> int:
        """The glyph id of a character; 0 (.notdef, a box) where the font has none."""
        return self.glyphs.get(ord(char), 0)

    def advance(self, glyph: int) -> float:
        """A glyph's advance width in thousandths of the font size (PDF text space)."""
        return self.advances[glyph] * 1000 / self.units_per_em


@cache
def face(path: str, number: int = 0) -> Face:
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

    with TTFont(path, fontNumber=number, lazy=True) as font:  # closed: a process keeps no font file open
        order = font.getGlyphOrder()
        metrics = font["hmtx"].metrics
        head, hhea = font["head"], font["hhea"]
        ids = {name: gid for gid, name in enumerate(order)}
        return Face(
            path=path, number=number,
            postscript_name=re.sub(r"[^A-Za-z0-9-]", "", font["name"].getDebugName(6) or Path(path).stem) or "Font",
            units_per_em=head.unitsPerEm,
            glyphs={code: ids[name] for code, name in font.getBestCmap().items() if name in ids},
            advances=tuple(metrics[name][0] if name in metrics else 0 for name in order),
            ascent=hhea.ascent, descent=hhea.descent, bbox=(head.xMin, head.yMin, head.xMax, head.yMax),
            italic_angle=float(font["post"].italicAngle), truetype="glyf" in font,
        )


def font_file(bold: bool = False) -> str:
    """DejaVu Sans (or its bold) as matplotlib ships it."""
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / _FILES[bold])


def dejavu(bold: bool = False) -> Face:
    return face(font_file(bold))


def private_use(char: str) -> bool:
    code = ord(char)
    return 0xE000 <= code <= 0xF8FF or code >= 0xF0000


@dataclass(frozen=True)
class Fallback:
    family: str  # matplotlib's name for it
    path: str
    number: int


@cache
def fallback_fonts() -> tuple[Fallback, ...]:
    """The machine's upright regular fonts matplotlib knows, but DejaVu Sans: the machine's own
    first, then the ones matplotlib ships (STIX), each in name order, so the choice is the same
    run after run."""
    import matplotlib
    from matplotlib import font_manager

    shipped = str(Path(matplotlib.get_data_path()))
    found = {(entry.fname, entry.index): entry.name for entry in font_manager.fontManager.ttflist
             if entry.style == "normal" and entry.weight in (400, "normal", "regular", "book")
             and not _NO_FALLBACK.match(entry.name) and entry.fname.lower().endswith((".ttf", ".otf", ".ttc"))}
    ordered = sorted(found.items(), key=lambda item: (item[0][0].startswith(shipped), item[1], item[0]))
    return tuple(Fallback(name, path, number) for (path, number), name in ordered)


@cache
def fallback_for(char: str, truetype: bool = False) -> Face | None:
    """The first fallback font that has the character (with TrueType outlines, if asked: the PDF
    embeds only those); None for a private-use character or one no font has. Reads each font's
    character map once per process, and only for characters DejaVu lacks."""
    if private_use(char):
        return None
    for font in fallback_fonts():
        try:
            candidate = face(font.path, font.number)
        except Exception:  # a font file fontTools cannot read is no fallback
            continue
        if ord(char) in candidate.glyphs and (candidate.truetype or not truetype):
            return candidate
    return None


def chart_families(chars: Iterable[str]) -> list[str]:
    """matplotlib family names that, after DejaVu Sans, draw these characters: the fallbacks that
    have any of them, in the order fallback_for tries them."""
    paths = {found.path for char in set(chars) if (found := fallback_for(char)) is not None}
    return list(dict.fromkeys(font.family for font in fallback_fonts() if font.path in paths))


def code_point(char: str) -> str:
    return f"U+{ord(char):04X}"


class Medium(StrEnum):
    PNG = "png"
    PDF = "pdf"


@dataclass(frozen=True)
class MissingGlyphs:
    """Characters no available font covers, and where they were to be shown."""

    chars: str  # each once, in code point order
    medium: Medium
    merchant: str
    chart_id: str = ""  # "": the deck's own text (title slide, summary, footers)


def missing_glyphs(chars: Iterable[str], medium: Medium, merchant: str,
                   chart_id: str = "") -> tuple[MissingGlyphs, ...]:
    """The record of these characters, or none when there are none."""
    unique = "".join(sorted(set(chars)))
    return (MissingGlyphs(unique, medium, merchant, chart_id),) if unique else ()


@dataclass
class _Seen:
    places: int = 0
    charts: set[str] = field(default_factory=set)  # bounded by the pack
    own_text: bool = False  # in a deck's title slide, summary or footer
    media: set[str] = field(default_factory=set)
    merchants: list[str] = field(default_factory=list)  # the first few
    more_merchants: bool = False


class GlyphReport:
    """The run's characters no font covers, gathered from every chart and deck: one warning in
    the report (run.warnings) and one line in the log, however many places they occur in."""

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}

    def add(self, records: Iterable[MissingGlyphs]) -> None:
        for record in records:
            for char in record.chars:
                seen = self._seen.setdefault(char, _Seen())
                seen.places += 1
                seen.media.add(record.medium.value)
                if record.chart_id:
                    seen.charts.add(record.chart_id)
                else:
                    seen.own_text = True
                if record.merchant not in seen.merchants:
                    if len(seen.merchants) < _EXAMPLES:
                        seen.merchants.append(record.merchant)
                    else:
                        seen.more_merchants = True

    def message(self) -> str:
        """One line: the characters, grouped by where they occur."""
        groups: dict[str, list[str]] = {}
        for char, seen in sorted(self._seen.items()):
            places = [f"chart {chart}" for chart in sorted(seen.charts)] + ["the decks' own text"] * seen.own_text
            merchants = ", ".join(seen.merchants) + (" and more" if seen.more_merchants else "")
            plural = "s" if len(seen.merchants) > 1 else ""
            media = "/".join(sorted(seen.media)).upper()
            where = f"{' and '.join(places)} in the {media}, merchant{plural} {merchants}"
            groups.setdefault(where, []).append(f"{code_point(char)} {char}")
        return "no available font has these characters, drawn as boxes: " + \
            "; ".join(f"{', '.join(chars)} ({where})" for where, chars in groups.items())

    def warnings(self) -> list[dict[str, Any]]:
        """run.warnings: one entry for the run, or none."""
        if not self._seen:
            return []
        return [{"type": "missing_glyphs", "message": self.message(), "characters": [
            {"code_point": code_point(char), "character": char, "charts": sorted(seen.charts),
             "media": sorted(seen.media), "places": seen.places, "merchants": seen.merchants}
            for char, seen in sorted(self._seen.items())]}]

    def log(self) -> None:
        if self._seen:
            logger.warning("{}", self.message())

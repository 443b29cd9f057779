"""The PDF's fonts: which font sets each character, and each font embedded as a subset.

Text is set in DejaVu Sans (runner.fonts), a character it lacks in the first of the machine's
TrueType fonts that has it, and a character no font has as DejaVu's .notdef box (the run warns
of it: runner.fonts.GlyphReport). Each font goes into the PDF as a Type0 font over a CIDFontType2
with Identity-H encoding: a string in the page is 2-byte CIDs, a CID is the glyph's id in the
whole font, the CIDToGIDMap maps it to the glyph's id in the embedded subset, /W gives the widths
the layout measured with, and a ToUnicode CMap lets readers search and copy the text as written.

Subsetting costs tens of milliseconds a font, so subsets are cached (`_subset`) by font and
glyphs, and every DejaVu subset holds printable ASCII and the wording's own signs (`_ALWAYS`)
whether used or not: decks in English share one subset per font (~6 KB each), made once per run
in the render workers' forkserver (`warm`, from runner.decks.font_warmup), and a deck in another
alphabet costs one subset per font and worker.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache

from runner.fonts import Face, dejavu, fallback_for

# In every DejaVu subset: printable ASCII and the signs the slides' wording uses (runner.wording).
_ALWAYS = (*(chr(code) for code in range(0x20, 0x7F)), *"·–—…‘’“”€£×−")
_BFCHAR_MAX = 100  # entries in one beginbfchar block (the CMap format's limit)
_DROPPED_TABLES = ["GSUB", "GPOS", "GDEF", "BASE", "JSTF", "MATH", "kern", "FFTM", "gasp", "DSIG"]


@cache
def font_for(char: str, bold: bool) -> Face | None:
    """The font that sets a character: DejaVu Sans (bold, or regular where the bold lacks it), else
    a fallback with TrueType outlines; None where no font has it."""
    for candidate in (dejavu(bold), dejavu(False)):
        if ord(char) in candidate.glyphs:
            return candidate
    return fallback_for(char, truetype=True)


@cache
def char_width(char: str, bold: bool) -> float:
    """A character's advance in thousandths of the font size, as set (a missing one: the box's)."""
    face = font_for(char, bold) or dejavu(bold)
    return face.advance(face.glyph(char))


def resource_name(face: Face) -> bytes:
    """The font's name in a page's resources: its PostScript name (unique among the faces used)."""
    return (face.postscript_name + (f"-{face.number}" if face.number else "")).encode()


def runs(text: str, bold: bool) -> list[tuple[Face, str]]:
    """The text cut where the font setting it changes; a missing character stays in the run it
    falls in (it is drawn as that font's box)."""
    out: list[tuple[Face, str]] = []
    for char in text:
        face = font_for(char, bold) or (out[-1][0] if out else dejavu(bold))
        if out and out[-1][0] is face:
            out[-1] = (face, out[-1][1] + char)
        else:
            out.append((face, char))
    return out


def missing(text: str, bold: bool) -> set[str]:
    """The characters of a text no font sets."""
    return {char for char in text if font_for(char, bold) is None}


@dataclass(frozen=True)
class Subset:
    font_file: bytes  # the subset TrueType font, deflated
    length: int  # its length before deflating
    cid_to_gid: bytes  # the CIDToGIDMap stream's data, deflated


def _tag(face: Face, glyphs: frozenset[int]) -> bytes:
    """Six capitals naming the subset (PDF 9.6.4), from its glyphs: the same subset, the same tag."""
    digest = hashlib.sha256(f"{face.postscript_name}:{sorted(glyphs)}".encode()).digest()
    return bytes(ord("A") + byte % 26 for byte in digest[:6])


@lru_cache(maxsize=64)
def _subset(path: str, number: int, glyphs: frozenset[int]) -> Subset:
    # Imported here: the coordinator imports this module and never makes a subset.
    from fontTools import subset  # type: ignore[import-untyped]
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

    with TTFont(path, fontNumber=number, lazy=True, recalcBBoxes=False, recalcTimestamp=False) as font:
        order = font.getGlyphOrder()
        options = subset.Options(hinting=False, notdef_outline=True, glyph_names=False, layout_features=[], name_IDs=[],
                                 drop_tables=[*subset.Options().drop_tables, *_DROPPED_TABLES])
        subsetter = subset.Subsetter(options)
        subsetter.populate(gids=sorted(glyphs))
        subsetter.subset(font)
        new_ids = {name: gid for gid, name in enumerate(font.getGlyphOrder())}
        out = io.BytesIO()
        font.save(out)
        data = out.getvalue()
    cid_map = bytearray(2 * (max(glyphs) + 1))
    for gid in glyphs:
        cid_map[2 * gid:2 * gid + 2] = new_ids.get(order[gid], 0).to_bytes(2, "big")
    return Subset(zlib.compress(data, 6), len(data), zlib.compress(bytes(cid_map), 6))


def _always(face: Face) -> frozenset[int]:
    """The glyphs every subset of the font holds: .notdef, and for DejaVu the `_ALWAYS` signs."""
    if face.path not in (dejavu(False).path, dejavu(True).path):
        return frozenset({0})
    return frozenset({0, *(face.glyph(char) for char in _ALWAYS)})


def warm() -> None:
    """Make the two DejaVu subsets an English deck needs (runner.decks.font_warmup, in the render
    workers' forkserver only)."""
    for bold in (False, True):
        face = dejavu(bold)
        _subset(face.path, face.number, _always(face))


def _hex(text: str) -> bytes:
    return text.encode("utf-16-be").hex().upper().encode()


def _to_unicode(used: dict[int, str]) -> bytes:
    """A ToUnicode CMap: each CID used, the text it stands for."""
    entries = sorted(used.items())
    blocks = []
    for start in range(0, len(entries), _BFCHAR_MAX):
        chunk = entries[start:start + _BFCHAR_MAX]
        lines = b"\n".join(b"<%04X> <%s>" % (cid, _hex(char)) for cid, char in chunk)
        blocks.append(b"%d beginbfchar\n%s\nendbfchar" % (len(chunk), lines))
    return (b"/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
            b"/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
            b"/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
            b"1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n" + b"\n".join(blocks) +
            b"\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend")


def _widths(face: Face, cids: list[int]) -> bytes:
    """/W: runs of consecutive CIDs with their widths, `c [w1 w2 ...]`."""
    groups: list[list[int]] = []
    for cid in cids:
        if groups and cid == groups[-1][-1] + 1:
            groups[-1].append(cid)
        else:
            groups.append([cid])
    return b" ".join(b"%d [%s]" % (group[0], b" ".join(b"%d" % round(face.advance(cid)) for cid in group))
                     for group in groups)


def embed(face: Face, used: dict[int, str], add: Callable[[bytes], int],
          stream: Callable[[bytes, bytes], bytes]) -> int:
    """Write a font's objects with `add` (which returns an object's number); `used`: each glyph id
    the document sets, and the text it stands for. Returns the Type0 font's object number."""
    glyphs = frozenset(used) | _always(face)
    sub = _subset(face.path, face.number, glyphs)
    name = _tag(face, glyphs) + b"+" + face.postscript_name.encode()
    scale = 1000 / face.units_per_em
    x_min, y_min, x_max, y_max = (round(value * scale) for value in face.bbox)
    font_file = add(stream(b"/Length1 %d /Filter /FlateDecode" % sub.length, sub.font_file))
    descriptor = add(b"<< /Type /FontDescriptor /FontName /%s /Flags 32 /FontBBox [%d %d %d %d] /ItalicAngle %s "
                     b"/Ascent %d /Descent %d /CapHeight %d /StemV 80 /FontFile2 %d 0 R >>" % (
                         name, x_min, y_min, x_max, y_max, f"{face.italic_angle:g}".encode(),
                         round(face.ascent * scale), round(face.descent * scale), round(face.ascent * scale),
                         font_file))
    cid_map = add(stream(b"/Filter /FlateDecode", sub.cid_to_gid))
    cid_font = add(b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /%s "
                   b"/CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> "
                   b"/FontDescriptor %d 0 R /DW %d /W [%s] /CIDToGIDMap %d 0 R >>" % (
                       name, descriptor, round(face.advance(0)), _widths(face, sorted(used)), cid_map))
    to_unicode = add(stream(b"/Filter /FlateDecode", zlib.compress(_to_unicode(used), 6)))
    return add(b"<< /Type /Font /Subtype /Type0 /BaseFont /%s /Encoding /Identity-H /DescendantFonts [%d 0 R] "
               b"/ToUnicode %d 0 R >>" % (name, cid_font, to_unicode))


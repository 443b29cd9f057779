"""The PDF writer the deck's pages are drawn with (runner.decks.pdf_deck): pages of text in
Helvetica with each chart's PNG embedded as it is.

Why not matplotlib's PDF backend: measured on 7-chart decks, it costs 860 ms of CPU with the
PNGs embedded (it decodes and re-compresses each image) and 600-720 ms drawing the charts as
vectors, against 660 ms to render the seven charts in the first place; the goal is a fifth of
that. A PNG's compressed pixel data is valid PDF image data as it stands (FlateDecode with the
PNG predictor), so this writer copies it, and sets text in a standard font that every PDF
reader has; a deck then costs a few milliseconds. Text outside Windows-1252 shows as '?'.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import matplotlib

PAGE_W, PAGE_H = 960.0, 540.0  # points: 13.33 x 7.5 inches, 16:9
_FALLBACK_WIDTH = 600  # per 1000 units of font size: wider than most glyphs, so wrapping never overflows
_NAMED = {"€": "Euro", "–": "endash", "—": "emdash", "·": "periodcentered", "’": "quoteright", "‘": "quoteleft",
          "…": "ellipsis"}


@cache
def _widths(bold: bool) -> dict[str, int]:
    """Glyph widths of Helvetica (or Helvetica-Bold) from the metrics matplotlib ships."""
    path = Path(matplotlib.get_data_path()) / "fonts" / "afm" / ("phvb8a.afm" if bold else "phvr8a.afm")
    by_code: dict[str, int] = {}
    by_name: dict[str, int] = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if not line.startswith("C "):
            continue
        fields = dict(part.strip().split(" ", 1) for part in line.split(";") if part.strip().count(" ") >= 1)
        code, width, name = int(fields["C"]), int(fields["WX"]), fields.get("N", "")
        by_name[name] = width
        if 32 <= code < 127 and code not in (39, 96):  # StandardEncoding differs from ASCII at ' and `
            by_code[chr(code)] = width
    by_code["'"], by_code["`"] = by_name.get("quotesingle", 191), by_name.get("grave", 333)
    by_code.update({char: by_name[name] for char, name in _NAMED.items() if name in by_name})
    return by_code


def text_width(text: str, size: float, bold: bool = False) -> float:
    widths = _widths(bold)
    return sum(widths.get(char, _FALLBACK_WIDTH) for char in text) * size / 1000


def wrap(text: str, size: float, width: float, bold: bool = False) -> list[str]:
    """Lines of at most `width` points; a word longer than a line is cut."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        while text_width(word, size, bold) > width:  # a word wider than the line: cut it
            cut = max(1, next(i for i in range(len(word), 0, -1) if text_width(word[:i], size, bold) <= width))
            lines.extend([line] if line else [])
            lines.append(word[:cut])
            line, word = "", word[cut:]
        candidate = f"{line} {word}" if line else word
        if text_width(candidate, size, bold) <= width:
            line = candidate
        else:
            lines.append(line)
            line = word
    return [*lines, line] if line else lines


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    data: bytes  # zlib stream of PNG-filtered rows
    colors: int


def png_image(png: bytes) -> Image:
    """A PNG's pixel data for a PDF image, without decoding it (8-bit RGB or grey, not interlaced)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    position, chunks, header = 8, [], b""
    while position < len(png):
        length, kind = struct.unpack(">I4s", png[position:position + 8])
        body = png[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or color not in (0, 2) or interlace:
        raise ValueError(f"PNG of depth {depth}, colour type {color}, interlace {interlace}")
    return Image(width, height, b"".join(chunks), 3 if color == 2 else 1)


class Canvas:
    """One page's drawing operations, in PDF content-stream syntax."""

    def __init__(self) -> None:
        self.ops: list[bytes] = []
        self.images: list[Image] = []

    def text(self, x: float, y: float, text: str, size: float, bold: bool = False,
             color: tuple[float, float, float] = (0.1, 0.1, 0.1), align: str = "left") -> None:
        if align == "right":
            x -= text_width(text, size, bold)
        elif align == "center":
            x -= text_width(text, size, bold) / 2
        font = b"/F2" if bold else b"/F1"
        self.ops.append(b"%.3f %.3f %.3f rg BT %s %.1f Tf %.2f %.2f Td %s Tj ET" % (
            *color, font, size, x, y, _pdf_string(text)))

    def paragraph(self, x: float, top: float, text: str, size: float, width: float, max_lines: int,
                  bold: bool = False, color: tuple[float, float, float] = (0.1, 0.1, 0.1)) -> float:
        """Wrapped text from its first baseline down; returns the baseline after the last line."""
        lines = wrap(text, size, width, bold)
        if len(lines) > max_lines:
            lines = lines[:max_lines]
            while lines[-1] and text_width(lines[-1] + " …", size, bold) > width:
                lines[-1] = lines[-1].rsplit(" ", 1)[0] if " " in lines[-1] else lines[-1][:-1]
            lines[-1] += " …"
        for line in lines:
            self.text(x, top, line, size, bold, color)
            top -= size * 1.35
        return top

    def rect(self, x: float, y: float, w: float, h: float, color: tuple[float, float, float]) -> None:
        self.ops.append(b"%.3f %.3f %.3f rg %.2f %.2f %.2f %.2f re f" % (*color, x, y, w, h))

    def image(self, image: Image, x: float, y: float, w: float, h: float) -> None:
        self.images.append(image)
        self.ops.append(b"q %.2f 0 0 %.2f %.2f %.2f cm /Im%d Do Q" % (w, h, x, y, len(self.images)))


def document(pages: list[Canvas], title: str) -> bytes:
    """A complete PDF of the pages: objects, cross-reference table and trailer."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    def stream(entries: bytes, data: bytes) -> bytes:
        return b"<< %s /Length %d >>\nstream\n%s\nendstream" % (entries, len(data), data)

    catalog, tree = add(b""), add(b"")
    fonts = b"/F1 %d 0 R /F2 %d 0 R" % (
        add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"),
        add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"))
    kids = []
    for page in pages:
        images = b" ".join(b"/Im%d %d 0 R" % (i, add(stream(
            b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /%s /BitsPerComponent 8 "
            b"/Filter /FlateDecode /DecodeParms << /Predictor 15 /Colors %d /BitsPerComponent 8 /Columns %d >>" % (
                im.width, im.height, b"DeviceRGB" if im.colors == 3 else b"DeviceGray", im.colors, im.width),
            im.data))) for i, im in enumerate(page.images, 1))
        content = add(stream(b"/Filter /FlateDecode", zlib.compress(b"\n".join(page.ops), 6)))
        kids.append(add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] /Contents %d 0 R "
                        b"/Resources << /Font << %s >> /XObject << %s >> >> >>" % (
                            tree, PAGE_W, PAGE_H, content, fonts, images)))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % tree
    objects[tree - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    info = add(b"<< /Title <%s> /Producer (runner) >>" % ("\ufeff" + title).encode("utf-16-be").hex().encode())
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, catalog, info, xref)
    return bytes(out)

"""The PDF writer the deck's pages are drawn with (runner.decks.pdf_deck): pages of text in an
embedded subset of DejaVu Sans (runner.decks.pdf_font) with each chart's PNG embedded as it is.

Why not matplotlib's PDF backend: measured on 7-chart decks, it costs 860 ms of CPU with the
PNGs embedded (it decodes and re-compresses each image) and 600-720 ms drawing the charts as
vectors, against 660 ms to render the seven charts in the first place; the goal is a fifth of
that. A PNG's compressed pixel data is valid PDF image data as it stands (FlateDecode with the
PNG predictor), so this writer copies it, and sets text in the charts' own typeface, subset and
embedded, so any alphabet DejaVu Sans (or a fallback font on the machine) has prints, and
readers can search and copy it. Text is measured with the font's own advance widths (no kerning,
no shaping: scripts that need shaping, such as Arabic, are set letter by letter).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from runner.decks.pdf_font import char_width, embed, resource_name, runs
from runner.fonts import Face

PAGE_W, PAGE_H = 960.0, 540.0  # points: 13.33 x 7.5 inches, 16:9
PRODUCER = "runner"


def text_width(text: str, size: float, bold: bool = False) -> float:
    return sum(char_width(char, bold) for char in text) * size / 1000


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


def _text_string(text: str) -> bytes:
    """A PDF text string (Info, outlines): UTF-16BE with its byte order mark, in hex."""
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode() + b">"


def _date(moment: datetime) -> bytes:
    """A PDF date, in UTC: (D:YYYYMMDDHHmmSS+00'00')."""
    return b"(D:%s+00'00')" % moment.astimezone(UTC).strftime("%Y%m%d%H%M%S").encode()


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
        self.fonts: dict[bytes, tuple[Face, dict[int, str]]] = {}  # by resource name: each glyph set, as what text

    def _shown(self, text: str, size: float, bold: bool) -> bytes:
        """The text-showing operators for a text: a font and a string of glyph ids per run."""
        ops = []
        for face, run in runs(text, bold):
            name = resource_name(face)
            used = self.fonts.setdefault(name, (face, {}))[1]
            glyphs = [face.glyph(char) for char in run]
            for glyph, char in zip(glyphs, run, strict=True):
                used.setdefault(glyph, char if glyph else "\ufffd")  # a missing character's box: a replacement
            ops.append(b"/%s %.1f Tf <%s> Tj" % (name, size, b"".join(b"%04X" % glyph for glyph in glyphs)))
        return b" ".join(ops)

    def text(self, x: float, y: float, text: str, size: float, bold: bool = False,
             color: tuple[float, float, float] = (0.1, 0.1, 0.1), align: str = "left") -> None:
        if align == "right":
            x -= text_width(text, size, bold)
        elif align == "center":
            x -= text_width(text, size, bold) / 2
        self.ops.append(b"%.3f %.3f %.3f rg BT %.2f %.2f Td %s ET" % (*color, x, y, self._shown(text, size, bold)))

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


@dataclass(frozen=True)
class DocumentInfo:
    """What the PDF says about itself (its Info dictionary and XMP metadata)."""

    title: str
    author: str
    subject: str
    created: datetime


def _xmp(info: DocumentInfo) -> bytes:
    """The same as the Info dictionary, as XMP (what PDF 2.0 and archiving tools read)."""
    moment = info.created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = {key: escape(value) for key, value in (("title", info.title), ("author", info.author),
                                                  ("subject", info.subject))}
    return (f'<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
            'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:pdf="http://ns.adobe.com/pdf/1.3/">'
            f'<dc:format>application/pdf</dc:format>'
            f'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">{text["title"]}</rdf:li></rdf:Alt></dc:title>'
            f'<dc:creator><rdf:Seq><rdf:li>{text["author"]}</rdf:li></rdf:Seq></dc:creator>'
            f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{text["subject"]}</rdf:li></rdf:Alt>'
            f'</dc:description><xmp:CreateDate>{moment}</xmp:CreateDate><xmp:ModifyDate>{moment}</xmp:ModifyDate>'
            f'<xmp:CreatorTool>{PRODUCER}</xmp:CreatorTool><pdf:Producer>{PRODUCER}</pdf:Producer>'
            '</rdf:Description></rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>').encode()


def document(pages: list[Canvas], info: DocumentInfo) -> bytes:
    """A complete PDF of the pages: objects, cross-reference table and trailer."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    def stream(entries: bytes, data: bytes) -> bytes:
        return b"<< %s /Length %d >>\nstream\n%s\nendstream" % (entries, len(data), data)

    catalog, tree = add(b""), add(b"")
    used: dict[bytes, tuple[Face, dict[int, str]]] = {}
    for page in pages:
        for name, (face, glyphs) in page.fonts.items():
            used.setdefault(name, (face, {}))[1].update(glyphs)
    fonts = {name: embed(face, glyphs, add, stream) for name, (face, glyphs) in sorted(used.items())}
    kids = []
    for page in pages:
        images = b" ".join(b"/Im%d %d 0 R" % (i, add(stream(
            b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /%s /BitsPerComponent 8 "
            b"/Filter /FlateDecode /DecodeParms << /Predictor 15 /Colors %d /BitsPerComponent 8 /Columns %d >>" % (
                im.width, im.height, b"DeviceRGB" if im.colors == 3 else b"DeviceGray", im.colors, im.width),
            im.data))) for i, im in enumerate(page.images, 1))
        page_fonts = b" ".join(b"/%s %d 0 R" % (name, fonts[name]) for name in sorted(page.fonts))
        content = add(stream(b"/Filter /FlateDecode", zlib.compress(b"\n".join(page.ops), 6)))
        kids.append(add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] /Contents %d 0 R "
                        b"/Resources << /Font << %s >> /XObject << %s >> >> >>" % (
                            tree, PAGE_W, PAGE_H, content, page_fonts, images)))
    metadata = add(stream(b"/Type /Metadata /Subtype /XML", _xmp(info)))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R /Metadata %d 0 R >>" % (tree, metadata)
    objects[tree - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    info_object = add(b"<< /Title %s /Author %s /Subject %s /Creator %s /Producer %s /CreationDate %s "
                      b"/ModDate %s >>" % (_text_string(info.title), _text_string(info.author),
                                           _text_string(info.subject), _text_string(PRODUCER),
                                           _text_string(PRODUCER), _date(info.created), _date(info.created)))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, catalog, info_object, xref)
    return bytes(out)

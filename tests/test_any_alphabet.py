"""Decks in any alphabet: chart titles in Polish, Greek and Cyrillic print in the PDF and come back
from it as written (pypdf), in an embedded subset of the charts' typeface; the PDF's metadata is
Unicode; a character no font has is one warning in the report and one log line, never a Python
warning. The uncovered character is a private-use one (U+E000), which no fallback font is ever
asked for, so the tests hold whatever fonts the machine has."""

from __future__ import annotations

import json
import re
import unicodedata
import warnings
from dataclasses import replace
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from runner.charts import BUILTIN_PACK
from runner.decks.build import build_deck
from runner.decks.pdf import Canvas, DocumentInfo, document
from runner.decks.slides import day
from runner.fonts import Medium, MissingGlyphs, dejavu
from runner.records import DeckChart, DeckTask
from runner.render.worker import init_worker, render
from tests.helpers import assert_every_chart_once, render_task, run_cli

AOV, MIX = (next(spec for spec in BUILTIN_PACK if spec.kind == kind) for kind in ("line", "share_bars"))
TITLES = {
    "sales_pl": "Sprzedaż według miesięcy – Łódź",
    "mix_el": "Πωλήσεις ανά τύπο προϊόντος",
    "basket_ru": "Средний чек по месяцам",
    "script_g": "Basket size in ℊ",  # ℊ: not in DejaVu Sans; STIX, which matplotlib ships, has it
}
AUTHOR = "Zoë Łukasiewicz-Παπαδόπουλος"
PRIVATE = "\ue000"


def _pack(tmp_path: Path, charts: list[dict[str, Any]]) -> Path:
    path = tmp_path / "pack.toml"
    path.write_text("\n".join("[[chart]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in chart.items())
                              for chart in charts))
    return path


def _chart(chart_id: str, title: str, spec: Any = AOV, **extra: Any) -> dict[str, Any]:
    return {"id": chart_id, "title": title, "tool": spec.tool, "kind": spec.kind, "counts": spec.counts, **extra}


def _fonts(reader: PdfReader) -> list[Any]:
    return [font.get_object() for page in reader.pages for font in page["/Resources"]["/Font"].values()]


def test_titles_in_any_alphabet_come_back_from_the_pdf_as_written(tmp_path, demo_url, demo_tokens):
    token = demo_tokens[0]
    charts = [_chart(chart_id, title, MIX if chart_id == "mix_el" else AOV) for chart_id, title in TITLES.items()]
    charts[0]["y_label"] = "EUR ℊ"  # the chart's PNG takes ℊ from a fallback font too
    result = run_cli(["--server-url", demo_url, "--merchant", token, "--pack", str(_pack(tmp_path, charts)),
                      "--deck", "pdf", "--deck-author", AUTHOR], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_every_chart_once(result, [token], list(TITLES))
    report = result.report
    assert report is not None and report["run"]["warnings"] == []
    (deck,) = report["decks"]
    reader = PdfReader(deck["output"])
    # The pack has no key figures: no "At a glance" page with nothing on it, the charts follow the title.
    assert len(reader.pages) == 1 + len(TITLES)
    for page, title in zip(reader.pages[1:], TITLES.values(), strict=True):
        assert title in page.extract_text().splitlines(), (title, page.extract_text())

    run, (merchant,) = report["run"], report["merchants"]
    period = f"{day(run['start_date'])} – {day(run['end_date'])}"
    meta = reader.metadata
    assert meta is not None
    assert (meta.title, meta.author, meta.subject) == (
        f"Business review · {merchant['merchant_name']} · {period}", AUTHOR, period)
    assert meta.creation_date is not None and meta.creation_date == meta.modification_date
    assert abs((datetime.now(UTC) - meta.creation_date).total_seconds()) < 3600
    xmp = reader.xmp_metadata
    assert xmp is not None and xmp.dc_title == {"x-default": meta.title} and xmp.dc_creator == [AUTHOR]

    names = set()
    for font in _fonts(reader):  # every font embedded, as a subset, with a map back to Unicode
        (descendant,) = [d.get_object() for d in font["/DescendantFonts"]]
        assert (font["/Subtype"], font["/Encoding"], descendant["/Subtype"]) == ("/Type0", "/Identity-H",
                                                                                 "/CIDFontType2")
        assert "/FontFile2" in descendant["/FontDescriptor"] and "/ToUnicode" in font
        assert "/CIDToGIDMap" in descendant and "/W" in descendant
        assert re.fullmatch(r"/[A-Z]{6}\+[A-Za-z0-9-]+", font["/BaseFont"]), font["/BaseFont"]
        names.add(font["/BaseFont"][8:])
    assert {"DejaVuSans", "DejaVuSans-Bold"} < names  # and the font ℊ came from


def test_a_character_no_font_has_is_one_warning_in_the_report_and_the_log(tmp_path, demo_url, demo_tokens):
    token = demo_tokens[0]
    charts = [_chart("plain", "Average basket"), _chart("odd", f"Basket {PRIVATE} size", y_label=f"EUR {PRIVATE}")]
    result = run_cli(["--server-url", demo_url, "--merchant", token, "--pack", str(_pack(tmp_path, charts))],
                     tmp_path)  # a process of its own: its render workers' stderr is the run's
    assert result.returncode == 0, result.stderr[-3000:]
    assert_every_chart_once(result, [token], ["plain", "odd"])
    assert result.report is not None
    (warning,) = result.report["run"]["warnings"]
    assert warning["type"] == "missing_glyphs" and "U+E000" in warning["message"] and "chart odd" in warning["message"]
    assert warning["characters"] == [{"code_point": "U+E000", "character": PRIVATE, "charts": ["odd"],
                                      "media": ["pdf", "png"], "places": 2, "merchants": [token]}]
    assert "UserWarning" not in result.stderr and "Glyph" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "no available font has" in line]
    assert "WARNING" in line and "U+E000" in line and "chart odd" in line


def test_the_render_worker_takes_matplotlibs_glyph_warnings_in(warehouse, tmp_path):
    init_worker()
    token = warehouse.merchants()[0]["token"]
    task = render_task(warehouse, replace(AOV, y_label=f"EUR {PRIVATE}"), token, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rendered = render(task)
    assert not [w for w in caught if "Glyph" in str(w.message)]
    assert rendered.missing_glyphs == (MissingGlyphs(PRIVATE, Medium.PNG, token, AOV.id),)
    plain = render(render_task(warehouse, AOV, token, tmp_path))
    assert plain.missing_glyphs == ()


def test_a_deck_names_the_characters_its_pdf_cannot_show(warehouse, tmp_path):
    init_worker()
    token = warehouse.merchants()[0]["token"]
    task = render_task(warehouse, AOV, token, tmp_path)
    odd = replace(AOV, title=f"Basket {PRIVATE} size")
    deck = DeckTask(token, task.job.start_date, task.job.end_date, "2026-01-05",
                    (DeckChart(odd, task.data, render(task).png),), ("pdf",), merchant_name=f"Shop {PRIVATE}")
    built = build_deck(deck)
    assert set(built.missing_glyphs) == {MissingGlyphs(PRIVATE, Medium.PDF, token, AOV.id),
                                         MissingGlyphs(PRIVATE, Medium.PDF, token)}  # the title slide, footers


def _shown_alone(char: str) -> bool:
    """A character pypdf gives back as it is when it is the only one its glyph stands for: letters,
    digits, punctuation and symbols written left to right, not a combining mark."""
    return unicodedata.category(char)[0] in "LNPS" and unicodedata.bidirectional(char) in ("L", "EN", "ES", "ET",
                                                                                            "CS", "ON")


def _alphabet() -> list[str]:
    face = dejavu()
    by_glyph: dict[int, list[str]] = {}
    for code, glyph in face.glyphs.items():
        by_glyph.setdefault(glyph, []).append(chr(code))
    return sorted(chars[0] for chars in by_glyph.values() if len(chars) == 1 and _shown_alone(chars[0])
                  and unicodedata.normalize("NFKC", chars[0]) == chars[0])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(st.sampled_from(_alphabet()), min_size=1, max_size=12), min_size=1, max_size=4))
def test_any_text_dejavu_has_comes_back_from_the_pdf(words):
    text = " ".join(words)
    page = Canvas()
    page.text(40, 400, text, 20, bold=len(words) % 2 == 0)
    pdf = document([page], DocumentInfo(text, text, text, datetime.now(UTC)))
    reader = PdfReader(BytesIO(pdf))
    assert reader.pages[0].extract_text() == text
    assert reader.metadata is not None and reader.metadata.title == text

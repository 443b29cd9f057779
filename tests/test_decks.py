"""Decks through the real CLI: every PDF opened with pypdf, every PPTX with python-pptx."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pptx import Presentation
from pptx.util import Inches
from pypdf import PdfReader

from runner.charts import BUILTIN_PACK
from runner.decks.book import DeckBook
from runner.decks.pdf import png_image, wrap
from runner.errors import ErrorType
from runner.kinds import paragraphs
from runner.records import BuiltDeck, ChartJob, DeckDocument
from runner.report import exit_code_for
from runner.retrieval.parse import chart_data_from_json
from runner.status import ExitCode, RunStatus
from tests.helpers import assert_every_chart_once, assert_every_deck_once, run_cli

PICTURE = 13  # MSO_SHAPE_TYPE.PICTURE


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d[\d,]*(?:\.\d+)?", text)


def check_pdf(path: Path, charts: list[dict]) -> None:
    reader = PdfReader(path)
    assert len(reader.pages) == len(charts) + 2
    for page, chart in zip(reader.pages[2:], charts, strict=True):  # after the title and the summary
        text = " ".join(page.extract_text().split())
        assert chart["title"] in text
        if chart["status"] == "ok":
            assert any(number in text for number in _numbers(chart["paragraph"])), (chart["chart_id"], text)
            assert "/XObject" in page["/Resources"]
        else:  # why it failed is for the report, never the merchant
            assert "Not available for this period" in text and chart["error_type"] not in text


def check_pptx(path: Path, charts: list[dict]) -> None:
    deck = Presentation(str(path))
    assert len(deck.slides) == len(charts) + 2
    for slide, chart in zip(list(deck.slides)[2:], charts, strict=True):
        text = " ".join(shape.text_frame.text for shape in slide.shapes if shape.has_text_frame)
        pictures = [shape for shape in slide.shapes if shape.shape_type == PICTURE]
        assert chart["title"] in text
        if chart["status"] == "ok":
            assert len(pictures) == 1 and chart["paragraph"] in " ".join(text.split())
            (words,) = [s for s in slide.shapes if s.has_text_frame and s.text_frame.text == chart["paragraph"]]
            assert pictures[0].top + pictures[0].height <= words.top  # the paragraph sits below the chart
        else:
            assert not pictures and "Not available for this period" in text and chart["error_type"] not in text
        for shape in slide.shapes:  # nothing runs off the slide
            assert shape.left + shape.width <= deck.slide_width and shape.top + shape.height <= deck.slide_height


def test_every_merchant_gets_a_pdf_and_a_pptx_deck(tmp_path, demo_url, demo_tokens):
    merchants = demo_tokens[:2]
    result = run_cli(["--server-url", demo_url, *[a for m in merchants for a in ("--merchant", m)]], tmp_path,
                     in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_every_chart_once(result, merchants)
    assert_every_deck_once(result.report, merchants)
    assert {d["status"] for d in result.report["decks"]} == {"ok"}
    assert result.report["metrics"]["decks"]["decks_ok"] == 4
    for merchant in merchants:
        charts = [c for c in result.report["charts"] if c["merchant"] == merchant]
        folder = Path(charts[0]["output"]).parent
        check_pdf(folder / "business-review.pdf", charts)
        check_pptx(folder / "business-review.pptx", charts)
        assert merchant in PdfReader(folder / "business-review.pdf").pages[0].extract_text()


def test_a_failed_chart_makes_a_partial_deck_with_the_reason(tmp_path, demo_tokens):
    faults = ["--demo-server-arg=--malformed=percent", "--demo-server-arg=--fault-tool=get_user_demographics"]
    result = run_cli(["--merchant", demo_tokens[0], *faults, "--deck", "pdf"], tmp_path, in_process=True)
    assert result.returncode == 1, result.stderr[-3000:]
    assert_every_deck_once(result.report, [demo_tokens[0]], ("pdf",))
    (deck,) = result.report["decks"]
    assert (deck["status"], deck["charts_missing"]) == ("partial", 1)
    check_pdf(Path(deck["output"]), result.report["charts"])


def test_no_decks_when_turned_off(tmp_path, demo_url, demo_tokens):
    result = run_cli(["--server-url", demo_url, "--merchant", demo_tokens[0], "--charts", "aov_by_month",
                      "--deck", "none"], tmp_path, in_process=True)
    assert result.returncode == 0 and result.report["decks"] == []
    assert not list(result.report_path.parent.rglob("business-review.*"))


def _template(path: Path, chart_slides: int, drop: str | None = None, by_id: bool = False) -> Path:
    deck = Presentation()
    deck.slide_width, deck.slide_height = Inches(13.333), Inches(7.5)
    blank = deck.slide_layouts[6]
    cover = deck.slides.add_slide(blank)
    cover.shapes.add_textbox(Inches(1), Inches(1), Inches(10), Inches(1)).text_frame.text = "Review of {{merchant}}"
    cover.shapes.add_textbox(Inches(1), Inches(2), Inches(10), Inches(1)).text_frame.text = "{{period}}"
    ids = [spec.id for spec in reversed(BUILTIN_PACK)]  # by id, the slides need not follow the pack's order
    for i in range(chart_slides):
        slide = deck.slides.add_slide(blank)
        for role, top, height in (("title", 0.3, 0.8), ("chart", 1.2, 4.5), ("paragraph", 6.0, 1.2)):
            if drop == role and i == chart_slides - 1:
                continue
            box = slide.shapes.add_textbox(Inches(0.5), Inches(top), Inches(12), Inches(height))
            box.text_frame.text = "{{" + (f"{ids[i]}_{role}" if by_id else role) + "}}"
    deck.save(str(path))
    return path


@pytest.mark.parametrize("by_id", [False, True], ids=["by-order", "by-id"])
def test_a_template_is_filled(tmp_path, demo_url, demo_tokens, by_id):
    template = _template(tmp_path / "template.pptx", len(BUILTIN_PACK), by_id=by_id)
    result = run_cli(["--server-url", demo_url, "--merchant", demo_tokens[0], "--deck", "pptx",
                      "--deck-template", str(template)], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    (deck,) = result.report["decks"]
    filled = Presentation(deck["output"])
    slides = list(filled.slides)
    texts = [" ".join(s.text_frame.text for s in slide.shapes if s.has_text_frame) for slide in slides]
    assert not any("{{" in text for text in texts), texts
    assert demo_tokens[0] in texts[0] and "1 Jan 2024 – 31 Dec 2025" in texts[0]
    charts = list(reversed(result.report["charts"])) if by_id else result.report["charts"]
    for slide, text, chart in zip(slides[1:], texts[1:], charts, strict=True):
        assert chart["title"] in text and chart["paragraph"] in text
        (picture,) = [s for s in slide.shapes if s.shape_type == PICTURE]
        # fitted inside the {{chart}} box (12 x 4.5 in), centred in it
        assert picture.top >= Inches(1.2) - 1 and picture.top + picture.height <= Inches(5.7) + 1
        assert abs((picture.left + picture.width / 2) - (Inches(0.5) + Inches(12) / 2)) <= 1


@pytest.mark.parametrize(("slides", "drop", "by_id", "missing"), [
    (len(BUILTIN_PACK), "paragraph", False, "{{paragraph}}"),
    (len(BUILTIN_PACK) - 1, None, False, "has 6 chart slides for 7 charts: chart slides are matched in order"),
    (len(BUILTIN_PACK), "chart", True, "{{monthly_sales_yoy_chart}}"),
])
def test_a_template_without_a_placeholder_is_refused_before_any_work(tmp_path, slides, drop, by_id, missing):
    template = _template(tmp_path / "template.pptx", slides, drop, by_id)
    result = run_cli(["--deck-template", str(template)], tmp_path, in_process=True)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert missing in line and "template.pptx" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


GOLDEN = {  # the demo's first merchant, 2024-01-01..2025-12-31: the data are deterministic
    "monthly_sales_yoy": "In 2025 the total was €98,828, up 33.8% on 2024 (€73,845). The best month shown was Dec "
                         "2025 (€13,032) and the weakest Aug 2025 (€3,161).",
    "sales_by_product_type": "Of €172,673 over Jan 2024–Dec 2025: Pay in 4 56.7%, Pay in 3 43.3%. The largest "
                             "shift: Pay in 4 fell from 65.8% to 59.1% between Jan–Mar 2024 and Oct–Dec 2025.",
    "orders_by_user_type": "Of 528 orders over Jan 2024–Dec 2025: Returning 51.3%, New 27.3%, Network 21.4%. The "
                           "largest shift: New fell from 40.9% to 16.2% between Jan–Mar 2024 and Oct–Dec 2025.",
    "aov_by_month": "Over Jan 2024–Dec 2025, the monthly AOV ranged from €243.18 in Aug 2025 to €405.64 in Feb "
                    "2024. It was €296.17 in Dec 2025, against €381.36 in Jan 2024 (-22.3%).",
    "user_demographics": "The largest groups: 25-34 by age band (30.8%); Female by gender (55.9%); Credit by card "
                         "type (53.2%).",
    "orders_by_product_type": "Of 528 orders: Pay in 4 51.1% (270 orders) and Pay in 3 48.9% (258 orders).",
    "aov_by_product_type": "Pay in 4 €362.32, Pay in 3 €290.10. Pay in 4 is €72.22 (+24.9%) above Pay in 3.",
}


def test_golden_paragraphs_for_the_first_merchant(warehouse):
    from runner.demo.server import CHART_TOOLS

    token = warehouse.merchants()[0]["token"]
    for spec in BUILTIN_PACK:
        payload = getattr(warehouse, CHART_TOOLS[spec.tool][0])(token, "2024-01-01", "2025-12-31")
        assert paragraphs.write(spec, chart_data_from_json(spec, token, payload)) == GOLDEN[spec.id]


def test_flat_and_thin_data_get_honest_sentences():
    spec = {s.id: s for s in BUILTIN_PACK}
    flat = chart_data_from_json(spec["aov_by_month"], "m", {"labels": ["2024-01", "2024-02", "2024-03"], "series": [
        {"name": "AOV", "values": [100, 101, 100.5]}], "unit": "EUR"})
    assert "held steady over Jan–Mar 2024, between €100.00 and €101.00" in paragraphs.write(spec["aov_by_month"],
                                                                                           flat)
    one_year = chart_data_from_json(spec["monthly_sales_yoy"], "m", {"labels": ["Jan", "Feb"], "series": [
        {"name": "2025", "values": [10, 20]}], "unit": "EUR"})
    text = paragraphs.write(spec["monthly_sales_yoy"], one_year)
    assert text.startswith("In Jan–Feb 2025 the total was €30.00; there was nothing in Jan–Feb 2024")
    assert "up" not in text and "down" not in text and "%" not in text
    level = chart_data_from_json(spec["aov_by_product_type"], "m", {"labels": ["A", "B"], "values": [50, 50.2],
                                                                    "unit": "EUR"})
    assert "are level" in paragraphs.write(spec["aov_by_product_type"], level)


def test_pdf_text_wraps_inside_its_width_and_pngs_embed_unchanged(warehouse, tmp_path):
    from runner.decks.pdf import text_width

    lines = wrap("Supercalifragilistic " * 30 + "x" * 300, 13, 400)
    assert lines and all(text_width(line, 13) <= 400 for line in lines)
    from runner.render.worker import init_worker, render
    from tests.helpers import render_task

    init_worker()
    png = render(render_task(warehouse, BUILTIN_PACK[0], warehouse.merchants()[0]["token"], tmp_path)).png
    image = png_image(png)
    assert (image.width, image.height, image.colors) == (1600, 900, 3)


def test_a_deck_that_cannot_be_written_fails_and_counts_like_a_failed_chart(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    job = ChartJob("M1", BUILTIN_PACK[0], "2024-01-01", "2025-12-31", str(blocker / "chart.png"))
    book = DeckBook([job], ("pdf",), None, "2026-01-01")
    book.chart_final("M1")
    book.task("M1", {job.spec.id: None}, {job.spec.id: "bad_data: x"})  # no data: failed, nothing to build
    (row,) = book.results()
    assert (row.status, row.error_type) == ("failed", ErrorType.DECK_ERROR)
    book = DeckBook([job], ("pdf",), None, "2026-01-01")
    book.built("M1", BuiltDeck((DeckDocument("pdf", b"%PDF", "0" * 64),), 3, 1.0, 1.0))
    (row,) = book.results()
    assert (row.status, row.error_type) == ("failed", ErrorType.WRITE_ERROR)
    assert exit_code_for(7, 7, False, False, decks_failed=1) == (RunStatus.PARTIAL, ExitCode.FAILED)
    assert exit_code_for(7, 7, False, False) == (RunStatus.OK, ExitCode.OK)


def test_a_models_paragraph_is_trimmed_to_what_a_slide_holds():
    sentence = "Sales rose by a tenth this year. "
    text = paragraphs.trimmed(sentence * 40 + "\x1b[2J")
    assert len(text) <= paragraphs.MAX_CHARS and text.endswith("this year.") and "\x1b" not in text
    assert paragraphs.trimmed("word " * 200).endswith(" …")
    assert paragraphs.trimmed("  short\ttext ") == "short text"


def test_the_largest_shift_does_not_depend_on_float_noise(warehouse):
    """Two categories move by the same amount; SQLite's sums differ from the demo server's in the
    last bits (3771.5199999 vs 3771.52): the same numbers must give the same words."""
    from runner.demo.server import CHART_TOOLS

    spec = next(s for s in BUILTIN_PACK if s.id == "sales_by_product_type")
    token = warehouse.merchants()[0]["token"]
    payload = getattr(warehouse, CHART_TOOLS[spec.tool][0])(token, "2024-01-01", "2025-12-31")
    exact = paragraphs.write(spec, chart_data_from_json(spec, token, payload))
    for nudge in (1e-9, -1e-9):
        noisy = {**payload, "series": [{**s, "values": [v + nudge * (i + 1) if v else v for v in s["values"]]}
                                       for i, s in enumerate(payload["series"])]}
        assert paragraphs.write(spec, chart_data_from_json(spec, token, noisy)) == exact

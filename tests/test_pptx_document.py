"""PPTX decks as proper documents, through the real CLI, read back with python-pptx: core properties
(title, author, dates, no library defaults), alt text on every chart picture, titles in title
placeholders, real bullets, slide numbers as fields; for the built-in deck and a filled template."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image
from pptx import Presentation
from pptx.enum.shapes import MSO_SHAPE_TYPE, PP_PLACEHOLDER
from pptx.oxml.ns import qn
from pptx.util import Inches

from runner.charts import BUILTIN_PACK
from tests.helpers import run_cli, server_args

PERIOD = "1 Jan 2024 – 31 Dec 2025"  # the demo job's default dates
NOT_OURS = ("python-pptx", "Steve Canny", "2013-", "Microsoft", "PowerPoint Presentation", "{{")


def _now() -> datetime:
    """Now, as python-pptx reads a document's dates back: UTC's clock figures, whole seconds."""
    return datetime.now(UTC).replace(tzinfo=None)


def _check_properties(path: Path, merchant_name: str, author: str, started: datetime, ended: datetime) -> None:
    properties = Presentation(str(path)).core_properties
    assert properties.title == f"Business review · {merchant_name} · {PERIOD}"
    assert (properties.author, properties.last_modified_by) == (author, author)
    assert (properties.subject, properties.revision) == (PERIOD, 1)
    assert started.replace(microsecond=0) <= properties.created == properties.modified <= ended
    assert properties.comments == properties.keywords == properties.category == properties.content_status == ""
    assert properties.last_printed is None
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert not [name for name in names if "thumbnail" in name]
        for name in names:
            if name.startswith("docProps/"):
                text = archive.read(name).decode()
                assert not [word for word in NOT_OURS if word in text], (name, text)


def _pictures(slide: Any) -> list[Any]:
    return [shape for shape in slide.shapes if shape.shape_type == MSO_SHAPE_TYPE.PICTURE]


def _check_alt_text(picture: Any, chart: dict[str, Any]) -> None:
    properties = picture._element.nvPicPr.cNvPr
    assert properties.get("descr") == f"{chart['title']}: {chart['paragraph']}"
    assert properties.get("title") == chart["title"]


def test_the_builtin_deck_is_a_proper_document(tmp_path, demo_tokens):
    merchant = demo_tokens[0]
    faults = server_args("--malformed=nan", "--fault-tool=get_user_demographics")  # a note on the summary
    started = _now()
    result = run_cli(["--merchant", merchant, *faults, "--deck", "pptx"], tmp_path, in_process=True)
    ended = _now()
    assert result.returncode == 1, result.stderr[-3000:]
    (deck,) = result.report["decks"]
    assert deck["status"] == "partial"
    _check_properties(Path(deck["output"]), deck["merchant_name"], "runner", started, ended)

    slides = list(Presentation(deck["output"]).slides)
    charts = result.report["charts"]
    assert len(slides) == len(charts) + 2
    titles = ["Business review", "At a glance", *(chart["title"] for chart in charts)]
    for number, (slide, title) in enumerate(zip(slides, titles, strict=True), 1):
        placeholder = slide.shapes.title
        assert placeholder is not None and placeholder.is_placeholder
        assert placeholder.placeholder_format.type == PP_PLACEHOLDER.TITLE and placeholder.text_frame.text == title
        fields = slide.element.findall(f".//{qn('a:fld')}")
        if number == 1:  # the title slide has no footer
            assert not fields
            continue
        (field,) = fields
        assert field.get("type") == "slidenum" and field.findtext(qn("a:t")) == str(number)
        fonts = {font.get("typeface") for font in slide.element.iter(qn("a:latin"))}
        assert fonts == {"DejaVu Sans"}
    for slide, chart in zip(slides[2:], charts, strict=True):
        if chart["status"] == "ok":
            (picture,) = _pictures(slide)
            _check_alt_text(picture, chart)
        else:
            assert not _pictures(slide)
    bulleted = [paragraph for paragraph in slides[1].element.iter(qn("a:p"))
                if paragraph.find(f"{qn('a:pPr')}/{qn('a:buChar')}") is not None]
    (note,) = bulleted
    text = "".join(note.itertext())
    assert text.startswith("Not available for this period: ") and "Customer demographics" in text
    assert "■" not in text and "•" not in text  # the mark is the paragraph's, not typed
    assert int(note.find(qn("a:pPr")).get("indent")) < 0  # the mark hangs in the indent


def _template(path: Path, logo: Path) -> Path:
    """What a user builds first with python-pptx: a cover with a logo, a slide per chart."""
    deck = Presentation()
    deck.slide_width, deck.slide_height = Inches(13.333), Inches(7.5)
    blank = deck.slide_layouts[6]
    cover = deck.slides.add_slide(blank)
    cover.shapes.add_textbox(Inches(1), Inches(1), Inches(10), Inches(1)).text_frame.text = "Review of {{merchant}}"
    cover.shapes.add_picture(str(logo), Inches(11), Inches(6), Inches(1), Inches(1))
    for _ in BUILTIN_PACK:
        slide = deck.slides.add_slide(blank)
        for role, top, height in (("title", 0.3, 0.8), ("chart", 1.2, 4.5), ("paragraph", 6.0, 1.2)):
            box = slide.shapes.add_textbox(Inches(0.5), Inches(top), Inches(12), Inches(height))
            box.text_frame.text = "{{" + role + "}}"
    deck.save(str(path))
    return path


def test_a_filled_template_is_a_proper_document_by_its_author(tmp_path, demo_url, demo_tokens):
    logo = tmp_path / "logo.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(logo)
    template = _template(tmp_path / "template.pptx", logo)
    author = "Ana Łukasz, Αθήνα"
    started = _now()
    result = run_cli(["--server-url", demo_url, "--merchant", demo_tokens[0], "--deck", "pptx",
                      "--deck-template", str(template), "--deck-author", author], tmp_path, in_process=True)
    ended = _now()
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.report["config"]["deck_author"] == {"value": author, "source": "cli:--deck-author"}
    (deck,) = result.report["decks"]
    _check_properties(Path(deck["output"]), deck["merchant_name"], author, started, ended)
    slides = list(Presentation(deck["output"]).slides)
    (logo_picture,) = _pictures(slides[0])
    assert logo_picture._element.nvPicPr.cNvPr.get("descr") == "logo.png"  # the template's own: as its author left it
    for slide, chart in zip(slides[1:], result.report["charts"], strict=True):
        (picture,) = _pictures(slide)
        _check_alt_text(picture, chart)


def test_a_merged_rerun_rebuilds_the_deck_by_the_runs_author(tmp_path, demo_tokens):
    faults = server_args("--malformed=nan", "--fault-tool=get_user_demographics")
    first = run_cli(["--merchant", demo_tokens[0], *faults, "--charts", "aov_by_month,user_demographics",
                     "--deck", "pptx", "--deck-author", "Team Ω"], tmp_path, in_process=True)
    assert first.returncode == 1, first.stderr[-3000:]
    merged = run_cli(["--rerun-failed", str(first.report_path), "--merge"], tmp_path, in_process=True)
    assert merged.returncode == 0, merged.stderr[-3000:]
    report = json.loads(first.report_path.read_text())
    (deck,) = report["decks"]
    assert deck["status"] == "ok"
    assert Presentation(deck["output"]).core_properties.author == "Team Ω"
    slides = list(Presentation(deck["output"]).slides)
    assert len(slides) == 1 + len(report["charts"])  # neither chart makes a key figure: no summary slide
    for slide, chart in zip(slides[1:], report["charts"], strict=True):
        (picture,) = _pictures(slide)
        _check_alt_text(picture, chart)


def test_a_deck_author_that_cannot_be_written_is_refused(tmp_path):
    result = run_cli(["--deck-author", "Ana\x07"], tmp_path, in_process=True)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "deck_author" in line and "'Ana\\x07'" in line and "printable" in line

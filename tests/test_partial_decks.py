"""A deck missing a chart, through the real CLI: the merchant reads "Not available for this
period", never why; the report and the log keep why; --partial-decks chooses a placeholder slide,
no slide, or no deck.

The chart fails for real: a pack of the built-in charts plus one whose tool the demo server does
not have (a tool_error, "Unknown tool").
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
from pptx import Presentation
from pptx.util import Inches
from pypdf import PdfReader

from runner.charts import BUILTIN_PACK
from runner.errors import ErrorType
from tests.helpers import CliRun, check_report, run_cli

NOT_AVAILABLE = "Not available for this period"
FAILING = {"id": "refunds_by_month", "title": "Refunds by month", "tool": "get_refunds_by_month", "kind": "line"}
# The failing chart sits mid-deck, so leaving it out shifts the slides after it.
CHARTS = [*({"id": s.id, "title": s.title, "tool": s.tool, "kind": s.kind} for s in BUILTIN_PACK[:3]), FAILING,
          *({"id": s.id, "title": s.title, "tool": s.tool, "kind": s.kind} for s in BUILTIN_PACK[3:])]
CHART_IDS = [chart["id"] for chart in CHARTS]
# Nothing of why the chart failed may reach the merchant.
INTERNAL = ("Unknown tool", FAILING["tool"], "Data unavailable", "reported an error")


def _pack(tmp_path: Path) -> Path:
    path = tmp_path / "pack.toml"
    path.write_text("\n".join("[[chart]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in chart.items())
                              for chart in CHARTS))
    return path


def _run(tmp_path: Path, demo_url: str, token: str, *args: str, env: dict[str, str] | None = None) -> CliRun:
    return run_cli(["--server-url", demo_url, "--merchant", token, "--pack", str(_pack(tmp_path)), *args],
                   tmp_path, env=env, in_process=True)


def _checked(result: CliRun, token: str) -> dict:
    """Exit 1 (a chart failed), every chart and deck row once, and the failed chart's row keeping why."""
    assert result.returncode == 1, result.stderr[-3000:]
    report = check_report(result, [token], CHART_IDS)
    (failed,) = [c for c in report["charts"] if c["status"] != "ok"]
    assert (failed["chart_id"], failed["status"], failed["error_type"]) == (FAILING["id"], "failed", "tool_error")
    assert "Unknown tool" in failed["error"] and FAILING["tool"] in failed["error"]
    assert report["metrics"]["errors_by_type"] == {"tool_error": 1}
    # The log keeps why, too.
    assert re.search(rf"{FAILING['id']} failed \(tool_error\): .*Unknown tool", result.stderr), result.stderr[-3000:]
    return report


def _clean(text: str, where: str) -> None:
    lowered = text.lower()
    leaks = [word for word in INTERNAL if word.lower() in lowered]
    leaks += [error_type.value for error_type in ErrorType if re.search(rf"\b{error_type.value}\b", lowered)]
    assert not leaks, (where, leaks, text[:500])


def _pdf_pages(path: Path) -> list[str]:
    reader = PdfReader(path)
    _clean(" ".join(str(value) for value in (reader.metadata or {}).values()), f"{path} metadata")
    pages = [" ".join(page.extract_text().split()) for page in reader.pages]
    for number, text in enumerate(pages, 1):
        _clean(text, f"{path} page {number}")
    return pages


def _pptx_slides(path: Path) -> list[list[str]]:
    """Each slide's text boxes; every XML part of the file is checked for internal text first."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith((".xml", ".rels")):
                xml = archive.read(name).decode("utf-8")
                assert not [word for word in (*INTERNAL, "tool_error") if word in xml], (path, name)
    deck = Presentation(str(path))
    slides = [[shape.text_frame.text for shape in slide.shapes if shape.has_text_frame] for slide in deck.slides]
    for number, texts in enumerate(slides, 1):
        _clean(" ".join(texts), f"{path} slide {number}")
    return slides


def _partial_log_line(result: CliRun, token: str) -> str:
    (line,) = [line for line in result.stderr.splitlines() if f"deck for {token} " in line]
    assert "INFO" in line and f"deck for {token} is partial" in line and FAILING["id"] in line, line
    return line


def _placeholder_page(pages: list[str]) -> bool:
    """A page with the failed chart's title and the neutral line in place of its chart (not a
    summary's "Not available for this period: <titles>")."""
    return any(FAILING["title"] in text and re.search(re.escape(NOT_AVAILABLE) + r"(?!:)", text) for text in pages)


def test_a_failed_charts_slide_says_not_available_and_nothing_internal(tmp_path, demo_url, demo_tokens):
    token = demo_tokens[0]
    result = _run(tmp_path, demo_url, token)
    report = _checked(result, token)
    assert report["config"]["partial_decks"] == {"value": "placeholder", "source": "default"}
    assert {(d["format"], d["status"], d["charts_missing"]) for d in report["decks"]} == {
        ("pdf", "partial", 1), ("pptx", "partial", 1)}
    assert report["metrics"]["decks"]["decks_partial"] == 2 and report["metrics"]["decks"]["decks_skipped"] == 0
    decks = {d["format"]: Path(d["output"]) for d in report["decks"]}
    assert _placeholder_page(_pdf_pages(decks["pdf"]))
    slides = _pptx_slides(decks["pptx"])
    assert any(FAILING["title"] in texts and NOT_AVAILABLE in texts for texts in slides), slides
    line = _partial_log_line(result, token)
    assert "missing 1 of 8 charts" in line and "partial_decks=placeholder" in line


def test_omit_leaves_the_failed_charts_slide_out_and_misses_the_placeholder_decks_cache(tmp_path, demo_url,
                                                                                        demo_tokens):
    token = demo_tokens[0]
    placeholder = _checked(_run(tmp_path, demo_url, token), token)
    # The same output folder, so the same render cache: the placeholder deck is in it.
    result = _run(tmp_path, demo_url, token, "--partial-decks", "omit")
    report = _checked(result, token)
    assert report["config"]["partial_decks"] == {"value": "omit", "source": "cli:--partial-decks"}
    before = {d["format"]: d for d in placeholder["decks"]}
    for deck in report["decks"]:
        assert (deck["status"], deck["charts_missing"], deck["cached"]) == ("partial", 1, False), deck
        # Its slide, and the summary, which held only the note naming it: this pack has no key figures.
        assert deck["slides"] == before[deck["format"]]["slides"] - 2
    decks = {d["format"]: Path(d["output"]) for d in report["decks"]}
    pages, kept_pages = _pdf_pages(decks["pdf"]), _pdf_pages(Path(before["pdf"]["output"]))
    assert len(pages) == len(kept_pages) - 2 and not _placeholder_page(pages)
    assert any("At a glance" in text for text in kept_pages) and not any("At a glance" in text for text in pages)
    # Left out means left out: not its page, nor the summary's note (which names it with placeholder).
    assert not any(FAILING["title"] in text for text in pages)
    assert sum(FAILING["title"] in text for text in kept_pages) == 2
    slides, kept_slides = _pptx_slides(decks["pptx"]), _pptx_slides(Path(before["pptx"]["output"]))
    assert len(slides) == len(kept_slides) - 2
    assert not any(FAILING["title"] in texts for texts in slides)  # no slide has it as its title box
    assert not any(NOT_AVAILABLE in texts for texts in slides)
    line = _partial_log_line(result, token)
    assert "left out" in line and "partial_decks=omit" in line


def test_skip_writes_no_deck_and_says_why_in_the_deck_rows(tmp_path, demo_url, demo_tokens):
    token = demo_tokens[0]
    result = _run(tmp_path, demo_url, token, env={"SCALAPAY_PARTIAL_DECKS": "skip"})
    report = _checked(result, token)
    assert report["config"]["partial_decks"] == {"value": "skip", "source": "env:SCALAPAY_PARTIAL_DECKS"}
    assert {d["format"] for d in report["decks"]} == {"pdf", "pptx"}
    for deck in report["decks"]:
        assert (deck["status"], deck["output"], deck["error_type"], deck["charts_missing"]) == (
            "skipped", None, None, 1), deck
        assert "partial_decks=skip" in deck["error"] and FAILING["id"] in deck["error"], deck
    assert not list(result.report_path.parent.rglob("business-review.*"))
    assert report["metrics"]["decks"]["decks_skipped"] == 2 and report["metrics"]["decks"]["decks_partial"] == 0
    (merchant,) = report["merchants"]
    assert (merchant["deck_pdf"], merchant["deck_pptx"]) == ("skipped", "skipped")
    (line,) = [line for line in result.stderr.splitlines() if f"deck for {token} " in line]
    assert "INFO" in line and "skipped by partial_decks=skip" in line and FAILING["id"] in line, line


def _template(path: Path) -> Path:
    """A template matched in order: a cover, then one slide per chart of the pack."""
    deck = Presentation()
    blank = deck.slide_layouts[6]
    deck.slides.add_slide(blank).shapes.add_textbox(Inches(1), Inches(1), Inches(8), Inches(1)).text_frame.text = (
        "Review of {{merchant}}, {{period}}")
    for _ in CHARTS:
        slide = deck.slides.add_slide(blank)
        for role, top in (("title", 0.3), ("chart", 1.2), ("paragraph", 5.5)):
            slide.shapes.add_textbox(Inches(0.5), Inches(top), Inches(9), Inches(1)).text_frame.text = (
                "{{" + role + "}}")
    deck.save(str(path))
    return path


@pytest.mark.parametrize("partial", ["placeholder", "omit"])
def test_a_template_deck_shows_nothing_internal(tmp_path, demo_url, demo_tokens, partial):
    token = demo_tokens[0]
    template = _template(tmp_path / "template.pptx")
    result = _run(tmp_path, demo_url, token, "--deck", "pptx", "--deck-template", str(template),
                  "--partial-decks", partial)
    report = _checked(result, token)
    (deck,) = report["decks"]
    assert (deck["status"], deck["charts_missing"]) == ("partial", 1)
    slides = _pptx_slides(Path(deck["output"]))
    assert not [texts for texts in slides if any("{{" in text for text in texts)], slides
    if partial == "placeholder":
        assert len(slides) == 1 + len(CHARTS)
        (failed,) = [texts for texts in slides if FAILING["title"] in texts]
        assert NOT_AVAILABLE in failed, failed
    else:
        assert len(slides) == len(CHARTS)  # the cover and the seven charts with data
        assert not any(FAILING["title"] in " ".join(texts) for texts in slides)


@pytest.mark.parametrize("how", ["flag", "env", "config file"])
def test_a_bad_partial_decks_value_is_one_usage_line(tmp_path, how):
    args, env = [], None
    if how == "flag":
        args, named = ["--partial-decks", "maybe"], "--partial-decks"
    elif how == "env":
        env, named = {"SCALAPAY_PARTIAL_DECKS": "maybe"}, "SCALAPAY_PARTIAL_DECKS"
    else:
        config = tmp_path / "runner.toml"
        config.write_text('partial_decks = "maybe"\n')
        args, named = ["--config", str(config)], f"partial_decks in {config}"
    result = run_cli(["--merchant", "LIICIEWKV6BK", *args], tmp_path, env=env, in_process=True)
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and named in line and "'maybe'" in line, line
    assert "placeholder, omit, skip" in line, line
    assert not (tmp_path / "out").exists()

"""Templates as users make them, through the real CLI: one chart slide repeated for every chart;
placeholders in layouts, masters, groups, tables and notes, split across runs as PowerPoint
leaves them; key figures; and errors that name the real problem before any work. Every output
deck is read back with python-pptx and unzipped: no `{{` is left in any part, and no merchant's
name reaches another merchant's deck."""

from __future__ import annotations

import copy
import io
import re
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree
from PIL import Image
from pptx import Presentation
from pptx.enum.shapes import MSO_SHAPE, MSO_SHAPE_TYPE
from pptx.enum.shapes import PP_PLACEHOLDER as PH
from pptx.util import Inches
from pypdf import PdfReader

from runner.charts import BUILTIN_PACK
from runner.decks.placeholders import PLACEHOLDER, fill_runs
from tests.helpers import run_cli

FOOTER = "Confidential · prepared for {{merchant}}"


def _logo() -> io.BytesIO:
    out = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 30, 60)).save(out, "PNG")
    out.seek(0)
    return out


def _runs(frame, *parts: str, bold_first: bool = True) -> None:
    """One paragraph of several runs, the way PowerPoint splits text it has seen edited."""
    paragraph = frame.paragraphs[0]
    for i, text in enumerate(parts):
        run = paragraph.add_run()
        run.text = text
        run.font.bold = bold_first and i == 0


def _footer(placeholders, text: str) -> None:
    (footer,) = [p for p in placeholders if p.placeholder_format.type == PH.FOOTER]
    footer.text_frame.text = text


def _branded(path: Path, chart_slides: int = 1) -> Path:
    """A cover with a split placeholder, a group, a table of key figures and notes; then chart
    slides with a logo, a split {{title}}, {{chart}} in a group, {{paragraph}} in a table, notes;
    a layout whose footer and a text box name the merchant, a master footer with its token."""
    deck = Presentation()
    deck.slide_width, deck.slide_height = Inches(13.333), Inches(7.5)
    blank = deck.slide_layouts[6]
    _footer(blank.placeholders, FOOTER)
    _footer(deck.slide_master.placeholders, "{{merchant_token}}")
    cover = deck.slides.add_slide(blank)
    _runs(cover.shapes.add_textbox(Inches(1), Inches(0.5), Inches(10), Inches(1)).text_frame,
          "Business review for ", "{{mer", "chant}}")
    group = cover.shapes.add_group_shape()
    group.shapes.add_shape(MSO_SHAPE.RECTANGLE, Inches(1), Inches(1.6), Inches(10), Inches(0.8))
    inner = group.shapes.add_group_shape()  # a group in a group
    inner.shapes.add_textbox(Inches(1.2), Inches(1.7), Inches(9), Inches(0.6)).text_frame.text = "{{ period }}"
    table = cover.shapes.add_table(2, 3, Inches(1), Inches(3), Inches(10), Inches(1.5)).table
    for column, text in enumerate(("Sales {{kpi_sales}}", "{{kpi_sales_change}}", "AOV {{kpi_aov}}")):
        table.cell(0, column).text = text
    _runs(table.cell(1, 0).text_frame, "{{kpi_orders", "}}", bold_first=False)
    table.cell(1, 1).text = "{{kpi_new_customer_orders_change}}"
    table.cell(1, 2).text = "{{merchant_token}}"
    cover.notes_slide.notes_text_frame.text = "Open with {{merchant}}'s sales: {{kpi_sales}}"
    # A text box on the layout itself, as a user draws one in the slide-master view.
    box = cover.shapes.add_textbox(Inches(0.5), Inches(7), Inches(6), Inches(0.4))
    box.text_frame.text = "© {{merchant}}"
    blank.shapes._spTree.append(copy.deepcopy(box._element))
    box._element.getparent().remove(box._element)
    for _ in range(chart_slides):
        slide = deck.slides.add_slide(blank)
        slide.shapes.add_picture(_logo(), Inches(12), Inches(0.2), Inches(1), Inches(0.5))
        _runs(slide.shapes.add_textbox(Inches(0.5), Inches(0.2), Inches(11), Inches(0.8)).text_frame,
              "{{ti", "tle}}")
        frame = slide.shapes.add_group_shape()
        frame.shapes.add_shape(MSO_SHAPE.RECTANGLE, Inches(0.5), Inches(1.1), Inches(12.3), Inches(4.6))
        frame.shapes.add_textbox(Inches(0.6), Inches(1.2), Inches(12), Inches(4.4)).text_frame.text = "{{chart}}"
        cell = slide.shapes.add_table(1, 1, Inches(0.5), Inches(5.9), Inches(12.3), Inches(1)).table.cell(0, 0)
        cell.text = "{{paragraph}}"
        slide.notes_slide.notes_text_frame.text = "{{title}}: {{paragraph}} ({{kpi_orders}})"
    deck.save(str(path))
    return path


def _package_text(path: Path) -> dict[str, str]:
    """Every XML part of a .pptx: its text and attribute values, as a reader would find them."""
    out = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith((".xml", ".rels")):
                root = etree.fromstring(archive.read(name))
                out[name] = " ".join([*root.itertext(), *(v for node in root.iter() for v in node.attrib.values())])
    return out


def _group_shapes(shapes) -> list:
    found = []
    for shape in shapes:
        found.append(shape)
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            found += _group_shapes(shape.shapes)
    return found


def _merchants_file(path: Path, merchants: list[dict[str, str]]) -> Path:
    path.write_text("token,name\n" + "".join(f"{m['token']},{m['name']}\n" for m in merchants))
    return path


def test_a_branded_one_chart_slide_template_is_filled_everywhere_for_each_merchant(tmp_path, warehouse):
    merchants = warehouse.merchants()[:2]
    template = _branded(tmp_path / "brand.pptx")
    result = run_cli(["--merchants-file", str(_merchants_file(tmp_path / "merchants.csv", merchants)),
                      "--deck", "pdf,pptx", "--deck-template", str(template)], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    for merchant, other in (merchants, merchants[::-1]):
        token, name = merchant["token"], merchant["name"]
        decks = {d["format"]: Path(d["output"]) for d in result.report["decks"] if d["merchant"] == token}
        charts = [c for c in result.report["charts"] if c["merchant"] == token]
        assert [c["chart_id"] for c in charts] == [spec.id for spec in BUILTIN_PACK]
        deck = Presentation(str(decks["pptx"]))
        cover, *chart_slides = deck.slides
        # The cover: the split placeholder keeps its first run's formatting, the rest in groups, a table, notes.
        (heading,) = [s for s in cover.shapes if s.has_text_frame and s.text_frame.text.startswith("Business")]
        assert heading.text_frame.text == f"Business review for {name}"
        assert heading.text_frame.paragraphs[0].runs[0].font.bold
        texts = [s.text_frame.text for s in _group_shapes(cover.shapes) if s.has_text_frame]
        assert "1 Jan 2024 – 31 Dec 2025" in texts
        (table,) = [s.table for s in cover.shapes if s.has_table]
        sales, change, aov = (table.cell(0, column).text for column in range(3))
        orders, new_change, cell_token = (table.cell(1, column).text for column in range(3))
        # The key figures as the deck's summary page shows them.
        summary = " ".join(PdfReader(decks["pdf"]).pages[1].extract_text().split())
        assert re.fullmatch(r"Sales €[\d,]+", sales) and sales.removeprefix("Sales ") in summary
        assert re.fullmatch(r"[+-][\d.]+% vs .+", change) and change.split(" vs ")[0] in summary
        assert re.fullmatch(r"AOV €[\d,.]+", aov) and aov.removeprefix("AOV ") in summary
        assert re.fullmatch(r"[\d,]+", orders) and orders in summary
        assert " vs " in new_change and cell_token == token
        assert cover.notes_slide.notes_text_frame.text == f"Open with {name}'s sales: {sales.removeprefix('Sales ')}"
        # One chart slide became seven, in pack order, each with the template's logo and its own chart.
        assert len(chart_slides) == len(BUILTIN_PACK)
        for slide, chart in zip(chart_slides, charts, strict=True):
            title = next(s for s in slide.shapes if s.has_text_frame)
            assert title.text_frame.text == chart["title"]
            (logo,) = [s for s in slide.shapes if s.shape_type == MSO_SHAPE_TYPE.PICTURE]
            assert logo.image.blob == _logo().getvalue()
            (group,) = [s for s in slide.shapes if s.shape_type == MSO_SHAPE_TYPE.GROUP]
            (picture,) = [s for s in group.shapes if s.shape_type == MSO_SHAPE_TYPE.PICTURE]
            assert picture.image.blob == Path(chart["output"]).read_bytes()
            (paragraph,) = [s.table.cell(0, 0).text for s in slide.shapes if s.has_table]
            assert paragraph == chart["paragraph"]
            assert slide.notes_slide.notes_text_frame.text == f"{chart['title']}: {chart['paragraph']} ({orders})"
        # Layouts and masters: this merchant's own copy.
        (footer,) = [p for p in deck.slide_layouts[6].placeholders if p.placeholder_format.type == PH.FOOTER]
        assert footer.text_frame.text == f"Confidential · prepared for {name}"
        assert any(s.has_text_frame and s.text_frame.text == f"© {name}" for s in deck.slide_layouts[6].shapes)
        (master_footer,) = [p for p in deck.slide_master.placeholders if p.placeholder_format.type == PH.FOOTER]
        assert master_footer.text_frame.text == token
        # Nothing left unfilled anywhere in the package; nothing of the other merchant.
        package = _package_text(decks["pptx"])
        assert not [part for part, text in package.items() if "{{" in text]
        assert not [part for part, text in package.items() if other["name"] in text or other["token"] in text]
        assert name in package["ppt/slideLayouts/slideLayout7.xml"]


def test_a_template_matched_in_order_keeps_its_slides_and_drops_those_past_the_last_chart(tmp_path):
    template = _branded(tmp_path / "brand.pptx", chart_slides=3)
    result = run_cli(["--merchant", "LIICIEWKV6BK", "--charts", "aov_by_month,monthly_sales_yoy", "--deck", "pptx",
                      "--deck-template", str(template)], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = result.report["decks"]
    deck = Presentation(row["output"])
    titles = [next(s for s in slide.shapes if s.has_text_frame).text_frame.text for slide in list(deck.slides)[1:]]
    assert titles == [c["title"] for c in result.report["charts"]]
    assert not [part for part, text in _package_text(Path(row["output"])).items() if "{{" in text]


def _edited(path: Path, edit) -> Path:
    deck = Presentation(str(_branded(path)))
    edit(deck)
    deck.save(str(path))
    return path


def _add_chart_slide(deck) -> None:
    slide = deck.slides.add_slide(deck.slide_layouts[6])
    for role in ("title", "chart", "paragraph"):
        slide.shapes.add_textbox(Inches(1), Inches(1), Inches(4), Inches(1)).text_frame.text = "{{" + role + "}}"


def _chart_slide_text(deck, old: str, new: str) -> None:
    """The chart slide's shape, table cell or notes whose text is `old` says `new`."""
    notes = deck.slides[1].notes_slide.notes_text_frame
    notes.text = notes.text.replace(old, new)
    for shape in _group_shapes(deck.slides[1].shapes):
        if shape.has_text_frame and shape.text_frame.text == old:
            shape.text_frame.text = new
    for shape in deck.slides[1].shapes:
        if shape.has_table and shape.table.cell(0, 0).text == old:
            shape.table.cell(0, 0).text = new


@pytest.mark.parametrize(("edit", "says"), [
    (_add_chart_slide, "has 2 chart slides for 7 charts: chart slides are matched in order, one per chart"),
    (lambda deck: _chart_slide_text(deck, "{{paragraph}}", "Read me"),
     "slide 2 lacks the placeholder {{paragraph}} (a chart slide needs {{title}}, {{chart}} and {{paragraph}})"),
    (lambda deck: _chart_slide_text(deck, "{{chart}}", "Chart here"), "slide 2 lacks the placeholder {{chart}}"),
    (lambda deck: (_chart_slide_text(deck, "{{chart}}", ""), _chart_slide_text(deck, "{{paragraph}}",
                                                                               "{{paragraph}} {{chart}}")),
     "slide 2 has {{chart}} in a table or its notes: the chart takes the place of a text box or shape holding it"),
    (lambda deck: _footer(deck.slide_layouts[6].placeholders, "For {{merchant_name}}"),
     "layout 'Blank' has the unknown placeholder {{merchant_name}}; known are {{merchant}}"),
    (lambda deck: setattr(deck.slides[0].notes_slide.notes_text_frame, "text", "{{kpi_revenue}}"),
     "slide 1's notes has the unknown placeholder {{kpi_revenue}}"),
    (lambda deck: _footer(deck.slide_master.placeholders, "{{title}}"),
     "slide master 1 has {{title}}, which belongs on a chart slide"),
    (lambda deck: _footer(deck.slide_layouts[6].placeholders, "For {{merchant"),
     "layout 'Blank' has '{{merchant', a placeholder without its closing }}"),
    (lambda deck: _chart_slide_text(deck, "{{chart}}", "{{aov_by_month_chart}}"),
     "slide 2 has chart placeholders matched in order ({{title}}…) and slide 2 ones matched by id"),
], ids=["two-chart-slides", "no-paragraph", "no-chart", "chart-in-a-table", "unknown-in-layout", "unknown-kpi",
        "title-in-master", "unclosed", "order-and-id"])
def test_a_template_that_cannot_work_is_one_line_naming_the_problem_before_any_work(tmp_path, edit, says):
    template = _edited(tmp_path / "brand.pptx", edit)
    result = run_cli(["--merchant", "LIICIEWKV6BK", "--deck-template", str(template)], tmp_path, in_process=True)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: deck template {template}") and says in line, line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# -- the split-run finder ---------------------------------------------------------------------------------
VALUES = {"merchant": "Casa Lume", "period": "", "kpi_sales": "€1,234"}
TEXT = st.text(alphabet="{} abmerchantpiodkpi_sl", max_size=12)


def _expected(text: str) -> str:
    return PLACEHOLDER.sub(lambda m: VALUES.get(m[1], m[0]), text)


@given(st.lists(TEXT, max_size=6))
def test_runs_filled_read_as_the_whole_text_filled(texts):
    filled = fill_runs(texts, VALUES)
    assert len(filled) == len(texts) and "".join(filled) == _expected("".join(texts))


@given(st.sampled_from(sorted(VALUES)), TEXT.filter(lambda t: "{" not in t and "}" not in t), TEXT.filter(
    lambda t: "{" not in t and "}" not in t), st.lists(st.integers(0, 40), max_size=5))
def test_a_placeholder_split_anywhere_is_found_and_its_value_goes_where_it_starts(name, before, after, cuts):
    text = f"{before}{{{{{name}}}}}{after}"
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    texts = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    filled = fill_runs(texts, VALUES)
    assert "".join(filled) == before + VALUES[name] + after
    start = next(i for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)) if a <= len(before) < b)
    assert filled[:start] == texts[:start]  # runs before it untouched
    assert filled[start].startswith(texts[start][:len(before) - bounds[start]] + VALUES[name])

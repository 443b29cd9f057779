"""Charts made for the slide. Through the real CLI: the deck places every chart at one size, the
same in the PDF and the PPTX; each chart slide says its title once (on the slide, not in the
picture); redrawn with the worker's own code, every text in a chart is at least 12 pt at the
size it is placed, and no two texts overlap or run off the picture. The demo merchants' charts
and generated dense ones (many months, many small parts) are checked for overlaps too."""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from pptx import Presentation
from pypdf import PageObject, PdfReader
from pypdf.generic import ContentStream

from runner.charts import BUILTIN_PACK, ChartSpec
from runner.errors import ChartError
from runner.records import ChartData, ChartJob, Panel, Series
from runner.render import worker
from runner.render.draw import draw_chart
from runner.request import DEFAULT_END, DEFAULT_START
from runner.retrieval.parse import chart_data_from_json
from tests.helpers import render_task, run_cli

MIN_PT = 12.0
PICTURE = 13  # MSO_SHAPE_TYPE.PICTURE
EMU_PER_INCH = 914400
SPECS = {spec.id: spec for spec in BUILTIN_PACK}


@dataclass(frozen=True)
class DeckRun:
    merchant: str
    folder: Path  # the merchant's folder in the run: chart PNGs and data files, the decks
    charts: tuple[dict, ...]  # the report's rows for the merchant's charts, in pack order
    compress_level: int


@pytest.fixture(scope="module")
def deck_run(tmp_path_factory: pytest.TempPathFactory, demo_url: str, demo_tokens: list[str]) -> DeckRun:
    merchant = demo_tokens[0]
    result = run_cli(["--server-url", demo_url, "--merchant", merchant], tmp_path_factory.mktemp("slides"),
                     in_process=True)
    assert result.returncode == 0 and result.report is not None, result.stderr[-3000:]
    charts = tuple(c for c in result.report["charts"] if c["merchant"] == merchant)
    assert [c["chart_id"] for c in charts] == list(SPECS) and {c["status"] for c in charts} == {"ok"}
    return DeckRun(merchant, Path(charts[0]["output"]).parent, charts,
                   result.report["config"]["png_compress_level"]["value"])


@pytest.fixture(scope="module", autouse=True)
def render_style() -> None:
    worker.init_worker()  # the worker's matplotlib style, in this process


def chart_slides(run: DeckRun) -> list:
    """The PPTX's slides with a picture: one per chart, in pack order (all charts are ok)."""
    deck = Presentation(str(run.folder / "business-review.pptx"))
    slides = [s for s in deck.slides if any(shape.shape_type == PICTURE for shape in s.shapes)]
    assert len(slides) == len(run.charts)
    return slides


def pptx_pictures(run: DeckRun) -> list:
    pictures = []
    for slide in chart_slides(run):
        (picture,) = [shape for shape in slide.shapes if shape.shape_type == PICTURE]
        pictures.append(picture)
    return pictures


def pdf_images(page: PageObject, reader: PdfReader) -> list[tuple[float, float]]:
    """A page's images, as placed: the `w 0 0 h x y cm` before each `Do`, in inches."""
    matrix, placed = None, []
    for operands, operator in ContentStream(page.get_contents(), reader).operations:
        if operator == b"cm":
            matrix = [float(v) for v in operands]
        elif operator == b"Do":
            assert matrix is not None
            placed.append((matrix[0] / 72, matrix[3] / 72))
    return placed


def chart_pages(run: DeckRun) -> list[tuple[PageObject, tuple[float, float]]]:
    """The PDF's pages with an image, each with its one image's placed size: one per chart, in pack order."""
    reader = PdfReader(run.folder / "business-review.pdf")
    pages = [(page, pdf_images(page, reader)) for page in reader.pages]
    out = [(page, images[0]) for page, images in pages if images]
    assert all(len(images) <= 1 for _, images in pages) and len(out) == len(run.charts)
    return out


def placed_size(run: DeckRun) -> tuple[float, float]:
    """The one size every chart has on the slides, in inches (PPTX and PDF agree on it)."""
    sizes = {(round(p.width / EMU_PER_INCH, 3), round(p.height / EMU_PER_INCH, 3)) for p in pptx_pictures(run)}
    sizes |= {(round(w, 3), round(h, 3)) for _, (w, h) in chart_pages(run)}
    assert len(sizes) == 1, sizes
    return sizes.pop()


def drawn(job: ChartJob, data: ChartData) -> Figure:
    """The chart drawn as the worker draws it: its figure size and resolution, its draw_chart."""
    figure = Figure(figsize=(worker.WIDTH_IN, worker.HEIGHT_IN), dpi=worker.DPI)
    FigureCanvasAgg(figure)
    draw_chart(figure, job, data)
    figure.canvas.draw()
    return figure


def shown_texts(figure: Figure) -> list[Text]:
    """Every text the drawn figure shows: visible, not blank; of the tick labels only those of
    ticks within the axis' view (matplotlib keeps spare ticks that it does not draw)."""
    spare: set[int] = set()
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = (high - low) * 1e-9
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                loc = tick.get_loc()
                if loc is None or not low - slack <= loc <= high + slack:
                    spare.update((id(tick.label1), id(tick.label2)))
    return [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in spare]


def assert_fits(figure: Figure) -> None:
    """No two shown texts overlap, and none runs off the figure (by more than a pixel's rounding)."""
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    # Text's own extent: an annotation's would include its leader line.
    boxes = [(t.get_text(), Text.get_window_extent(t, renderer)) for t in shown_texts(figure)]
    width, height = figure.canvas.get_width_height()
    for text, box in boxes:
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, (text, box)
    for (text_a, a), (text_b, b) in combinations(boxes, 2):
        overlap = min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0)
        assert overlap[0] <= 1 or overlap[1] <= 1, (text_a, a, text_b, b)


def chart_from_run(run: DeckRun, chart: dict) -> tuple[ChartJob, ChartData]:
    spec = SPECS[chart["chart_id"]]
    payload = json.loads(Path(chart["data_output"]).read_text())
    job = ChartJob(run.merchant, spec, payload["start_date"], payload["end_date"], chart["output"])
    return job, chart_data_from_json(spec, run.merchant, payload, payload.get("paragraph"))


# -- through the CLI ------------------------------------------------------------------------------------
@pytest.mark.xdist_group("slide_deck")  # one worker, so one CLI run for the three
def test_every_chart_is_placed_at_one_16_9_size_in_the_pdf_and_the_pptx(deck_run):
    width, height = placed_size(deck_run)
    assert width / height == pytest.approx(16 / 9, abs=0.01)
    assert width >= 8.0  # most of a 13.33 in wide slide
    for picture, chart in zip(pptx_pictures(deck_run), deck_run.charts, strict=True):
        assert picture.image.blob == Path(chart["output"]).read_bytes()  # the run folder's PNG is the slide's


@pytest.mark.xdist_group("slide_deck")
def test_every_chart_text_is_at_least_12_pt_where_the_slide_places_it(deck_run):
    placed_width, _ = placed_size(deck_run)
    for chart in deck_run.charts:
        job, data = chart_from_run(deck_run, chart)
        figure = drawn(job, data)
        scale = placed_width / figure.get_figwidth()
        texts = shown_texts(figure)
        assert len(texts) >= 5, chart["chart_id"]  # tick labels at least
        for text in texts:
            assert text.get_fontsize() * scale >= MIN_PT, (chart["chart_id"], text.get_text(), text.get_fontsize())
        words = " ".join(t.get_text() for t in texts)
        assert job.spec.title not in words and deck_run.merchant not in words, (chart["chart_id"], words)
        assert not figure.texts  # nothing on the figure outside its axes: no title, no subtitle
        assert_fits(figure)


@pytest.mark.xdist_group("slide_deck")
def test_a_chart_page_says_its_title_once(deck_run):
    for (page, _), chart in zip(chart_pages(deck_run), deck_run.charts, strict=True):
        text = " ".join(page.extract_text().split())
        assert text.count(chart["title"]) == 1, (chart["title"], text)
    for slide, chart in zip(chart_slides(deck_run), deck_run.charts, strict=True):
        text = " ".join(shape.text_frame.text for shape in slide.shapes if shape.has_text_frame)
        assert text.count(chart["title"]) == 1, (chart["title"], text)


# -- every demo merchant, and dense charts --------------------------------------------------------------
def test_no_text_overlaps_or_is_cut_in_demo_merchants_charts(warehouse, tmp_path):
    drawn_charts = 0
    for merchant in warehouse.merchants()[:8]:  # sizes of several kinds of shop; dense charts below
        for spec in BUILTIN_PACK:
            try:
                task = render_task(warehouse, spec, merchant["token"], tmp_path)
            except ChartError:  # a demo merchant with no data for this chart: nothing drawn
                continue
            drawn_charts += 1
            figure = drawn(task.job, task.data)
            for text in shown_texts(figure):
                assert text.get_fontsize() >= MIN_PT, (spec.id, text.get_text())
            assert_fits(figure)
    assert drawn_charts >= 40


def _job(spec: ChartSpec) -> ChartJob:
    return ChartJob("M", spec, DEFAULT_START, DEFAULT_END, "/dev/null")


def _months(draw: st.DrawFn) -> tuple[str, ...]:
    """One to sixty consecutive months, "YYYY-MM", from any month."""
    start_year, start_month = draw(st.integers(2015, 2025)), draw(st.integers(0, 11))
    count = draw(st.integers(1, 60))
    return tuple(f"{start_year + (start_month + i) // 12}-{(start_month + i) % 12 + 1:02d}" for i in range(count))


@st.composite
def monthly_parts(draw: st.DrawFn) -> ChartData:
    """Stacked monthly bars: up to five years of months, a few series, totals of any size."""
    labels = _months(draw)
    months = len(labels)
    scale = draw(st.sampled_from([1.0, 100.0, 1e4, 1e6, 1e8]))
    names = draw(st.lists(st.text("abcdefghij ", min_size=1, max_size=14), min_size=1, max_size=5, unique=True))
    series = tuple(Series(name, tuple(draw(st.lists(st.floats(0, scale), min_size=months, max_size=months))))
                   for name in names)
    return ChartData(draw(st.sampled_from(["EUR", "orders"])), (Panel("", labels, series),))


@st.composite
def monthly_lines(draw: st.DrawFn) -> ChartData:
    """Lines over up to five years of months: gaps, values of any size, up to eight named series."""
    labels = _months(draw)
    scale = draw(st.sampled_from([1.0, 100.0, 1e4, 1e6, 1e9]))
    names = draw(st.lists(st.text("abcdefghij ", min_size=1, max_size=20), min_size=1, max_size=8, unique=True))
    value = st.one_of(st.none(), st.floats(0, scale))
    series = tuple(Series(name, (1.0, *draw(st.lists(value, min_size=len(labels) - 1, max_size=len(labels) - 1))))
                   for name in names)
    return ChartData(draw(st.sampled_from(["EUR", "orders"])), (Panel("", labels, series),))


@st.composite
def breakdowns(draw: st.DrawFn) -> ChartData:
    """100% bars with parts of any size, many of them tiny."""
    panels = []
    for i in range(draw(st.integers(1, 4))):
        weights = draw(st.lists(st.one_of(st.floats(0.0, 3.0), st.floats(0.0, 100.0)), min_size=1, max_size=9))
        total = sum(weights) or 1.0
        parts = tuple(round(100 * w / total, 1) for w in weights)
        labels = tuple(draw(st.text("abcdefghijk-", min_size=1, max_size=12)) + str(j) for j in range(len(parts)))
        panels.append(Panel(f"Group {i}", labels, (Series("share", parts),)))
    return ChartData("%", tuple(panels))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=monthly_parts())
def test_dense_stacked_bars_never_overlap(data):
    figure = drawn(_job(SPECS["sales_by_product_type"]), data)
    assert_fits(figure)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=breakdowns())
def test_small_parts_never_overlap(data):
    figure = drawn(_job(SPECS["user_demographics"]), data)
    assert_fits(figure)



@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=monthly_lines())
def test_dense_lines_and_long_legends_never_overlap(data):
    figure = drawn(_job(SPECS["aov_by_month"]), data)
    assert_fits(figure)

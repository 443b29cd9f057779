"""The deck ledger (runner.decks.book.DeckBook) driven directly with records, as the coordinator
drives it: charts become final, the next deck due is taken, built (for real, in-process) or not,
and every merchant ends with one row per format."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.charts import BUILTIN_PACK
from runner.decks.book import DECK_NAME, DeckBook
from runner.decks.build import build_deck
from runner.errors import ErrorType
from runner.records import ChartData, ChartJob
from runner.render.worker import init_worker, render
from runner.request import DEFAULT_END, DEFAULT_START
from runner.status import DeckStatus, PartialDecks
from tests.helpers import render_task

SPECS = BUILTIN_PACK[:3]
CHARTS_OF = {"A": 3, "B": 2, "C": 1}  # merchant -> how many charts


def jobs_for(folder: Path, charts_of: dict[str, int] = CHARTS_OF) -> list[ChartJob]:
    return [ChartJob(merchant, spec, DEFAULT_START, DEFAULT_END, str(folder / merchant / f"{spec.id}.png"))
            for merchant, count in charts_of.items() for spec in SPECS[:count]]


@pytest.fixture(scope="module")
def material(warehouse: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[ChartData, bytes]]:
    """Real data and PNGs of SPECS for one merchant, chart id -> (data, png)."""
    init_worker()
    token = warehouse.merchants()[0]["token"]
    folder = tmp_path_factory.mktemp("material")
    tasks = [render_task(warehouse, spec, token, folder) for spec in SPECS]
    return {task.job.spec.id: (task.data, render(task).png) for task in tasks}


def ready(book: DeckBook, jobs: list[ChartJob], material: dict[str, tuple[ChartData, bytes]],
          missing: tuple[str, ...] = ()) -> dict[str, ChartData | None]:
    """Every chart final, its PNG written where the coordinator writes it; `missing` ones without data."""
    data: dict[str, ChartData | None] = {}
    for job in jobs:
        if job.spec.id not in missing:
            Path(job.output).parent.mkdir(parents=True, exist_ok=True)
            Path(job.output).write_bytes(material[job.spec.id][1])
        data[job.spec.id] = None if job.spec.id in missing else material[job.spec.id][0]
        book.chart_final(job.merchant)
    return data


@given(st.permutations([(merchant, n) for merchant, count in CHARTS_OF.items() for n in range(count)]))
def test_a_deck_is_due_exactly_when_its_merchants_charts_are_all_final(order: list[tuple[str, int]]) -> None:
    book = DeckBook(jobs_for(Path("/nonexistent")), ("pdf",), None, "2026-01-01")
    final: Counter[str] = Counter()
    settled: list[str] = []  # merchants whose charts are all final, in that order
    for merchant, _ in order:
        assert book.next_due() == (settled[0] if settled else None)
        book.chart_final(merchant)
        final[merchant] += 1
        if final[merchant] == CHARTS_OF[merchant]:
            settled.append(merchant)
        assert book.pending() == len(settled)
        assert book.next_due() == (settled[0] if settled else None)
    # Taking a deck's task makes it no longer due (here none has data: each fails, unbuilt).
    while (merchant := book.next_due()) is not None:
        assert merchant == settled.pop(0)
        assert book.task(merchant, {}, {}) is None
    assert book.pending() == 0 and settled == []


def test_a_deck_the_render_stage_lost_is_due_again_first_in_line(tmp_path, material):
    jobs = jobs_for(tmp_path, {"A": 1, "B": 1})
    book = DeckBook(jobs, ("pdf",), None, "2026-01-01")
    data = ready(book, jobs, material)
    task = book.task("A", {"monthly_sales_yoy": data["monthly_sales_yoy"]}, {})
    assert task is not None and task.merchant == "A"
    assert book.next_due() == "B"
    book.again("A")
    assert (book.next_due(), book.pending()) == ("A", 2)


# These decks have no key figures, so the whole deck has no summary slide. With placeholder, the missing
# chart keeps its slide ("not available") and a summary slide names it: one slide more; with omit, its
# slide is left out and nothing names it: one slide less.
@pytest.mark.parametrize(("partial", "status", "slides_added"), [
    (PartialDecks.PLACEHOLDER, DeckStatus.PARTIAL, 1),
    (PartialDecks.OMIT, DeckStatus.PARTIAL, -1),
    (PartialDecks.SKIP, DeckStatus.SKIPPED, None),
])
def test_partial_decks_gives_a_deck_missing_a_chart_its_status(tmp_path, material, partial, status, slides_added):
    jobs = jobs_for(tmp_path, {"A": 3})
    book = DeckBook(jobs, ("pdf", "pptx"), None, "2026-01-01", partial=partial)
    complete = book.task("A", ready(book, jobs, material), {})
    assert complete is not None
    whole = build_deck(complete)
    book = DeckBook(jobs, ("pdf", "pptx"), None, "2026-01-01", partial=partial)
    data = ready(book, jobs, material, missing=(SPECS[1].id,))
    task = book.task("A", data, {SPECS[1].id: "tool_error: Unknown tool"})
    if task is not None:
        book.built("A", build_deck(task))
    rows = book.results()
    assert [(row.format, row.status, row.charts_missing) for row in rows] == [("pdf", status, 1), ("pptx", status, 1)]
    if slides_added is None:  # no deck, and the rows say why
        assert task is None and not (tmp_path / "A" / f"{DECK_NAME}.pdf").exists()
        assert all(row.error_type is None and f"partial_decks=skip: 1 of 3 chart(s) missing ({SPECS[1].id})"
                   in (row.error or "") for row in rows)
    else:
        assert all(row.slides == whole.slides + slides_added and Path(row.output or "").is_file() for row in rows)


@pytest.mark.parametrize("partial", list(PartialDecks))
def test_a_deck_with_every_chart_is_ok_whatever_partial_decks_says(tmp_path, material, partial):
    jobs = jobs_for(tmp_path, {"A": 2})
    book = DeckBook(jobs, ("pdf",), None, "2026-01-01", partial=partial)
    task = book.task("A", ready(book, jobs, material), {})
    assert task is not None
    book.built("A", build_deck(task))
    ((status, missing),) = [(row.status, row.charts_missing) for row in book.results()]
    assert (status, missing) == (DeckStatus.OK, 0)


def test_a_deck_without_any_chart_fails_unbuilt(tmp_path, material):
    jobs = jobs_for(tmp_path, {"A": 2})
    book = DeckBook(jobs, ("pdf",), None, "2026-01-01")
    data = ready(book, jobs, material, missing=tuple(spec.id for spec in SPECS))
    assert book.task("A", data, {}) is None
    (row,) = book.results()
    assert (row.status, row.error_type, row.error) == (DeckStatus.FAILED, ErrorType.DECK_ERROR,
                                                       "no chart of this merchant has data")


def test_a_chart_whose_png_cannot_be_read_back_is_missing_from_its_deck(tmp_path, material):
    jobs = jobs_for(tmp_path, {"A": 2})
    book = DeckBook(jobs, ("pdf",), None, "2026-01-01")
    data = ready(book, jobs, material)
    Path(jobs[1].output).unlink()
    task = book.task("A", data, {})
    assert task is not None and [chart.available for chart in task.charts] == [True, False]
    book.built("A", build_deck(task))
    (row,) = book.results()
    assert (row.status, row.charts_missing) == (DeckStatus.PARTIAL, 1)


def test_a_deck_the_run_never_built_is_cancelled_and_the_first_word_stands(tmp_path, material):
    jobs = jobs_for(tmp_path, {"A": 1, "B": 1})
    book = DeckBook(jobs, ("pdf",), None, "2026-01-01")
    data = ready(book, jobs[:1], material)  # B's chart never became final: the run stopped
    task = book.task("A", data, {})
    assert task is not None
    book.built("A", build_deck(task))
    book.failed("A", ErrorType.DECK_ERROR, "too late")  # a deck's row is written once
    rows = {row.merchant: row for row in book.results()}
    assert (rows["A"].status, rows["B"].status, rows["B"].error_type) == (DeckStatus.OK, DeckStatus.CANCELLED,
                                                                          ErrorType.CANCELLED)
    metrics = book.metrics()
    assert (metrics["decks_total"], metrics["decks_ok"], metrics["decks_cancelled"]) == (2, 1, 1)


def test_no_deck_is_due_or_reported_without_a_format(tmp_path):
    jobs = jobs_for(tmp_path, {"A": 1})
    book = DeckBook(jobs, (), None, "2026-01-01")
    book.chart_final("A")
    assert (book.next_due(), book.pending(), book.results()) == (None, 0, ())
